"""`SamplingParams`: how the decoder turns next-token logits into a token.

The distribution sampled from, and hence the reported log-probabilities, is built in this order
(the order of Hugging Face's logits warpers):

1. temperature: z = logits / temperature (temperature 0 means greedy decoding, see below);
2. top-k (Fan et al. 2018): keep the k largest z (ties at the k-th value are all kept);
3. top-p / nucleus (Holtzman et al. 2020): keep the most probable tokens, in descending order,
   while the probability mass *before* a token is < top_p (so the smallest set whose mass reaches
   top_p; ties at the cut are all kept; the most probable token is always kept);
4. min-p (Nguyen et al. 2024): keep tokens whose probability is >= min_p * (largest probability);

every step renormalising over the tokens kept so far. The reported log-probability of a sampled
token is log softmax(z restricted to the kept tokens) at that token: the log-probability under
the distribution actually sampled from. Greedy decoding (temperature 0) takes the argmax of the raw
logits and reports log softmax(raw logits) at it, i.e. the temperature-1, untruncated policy
log-probability (top_k / top_p / min_p are ignored when greedy). `sampling_logprobs` recomputes
exactly these values from teacher-forced logits.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Integral

from jalign.errors import JalignError


def _fail(field: str, value: object, allowed: str) -> JalignError:
    return JalignError(f"sampling.{field}={value!r} is not allowed; allowed: {allowed}")


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Decoding settings (see the module docstring for the exact distribution sampled from).

    temperature: >= 0; 0 is greedy. top_k: >= 0; 0 disables it. top_p: in (0, 1]; 1 disables it.
    min_p: in [0, 1); 0 disables it. n: samples per prompt (>= 1). max_new_tokens: > 0.
    eos_ids: token ids that end a completion; None takes the model config's `eos_token_ids`,
    () never stops early. seed: seeds the sampler when `generate` is given no rng.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    n: int = 1
    max_new_tokens: int = 128
    eos_ids: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise _fail("temperature", t, "a finite number >= 0 (0 = greedy)")
        if not _is_int(self.top_k) or self.top_k < 0:
            raise _fail("top_k", self.top_k, "an integer >= 0 (0 = off)")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, int | float):
            raise _fail("top_p", self.top_p, "a number in (0, 1] (1 = off)")
        if not 0 < self.top_p <= 1:
            raise _fail("top_p", self.top_p, "a number in (0, 1] (1 = off)")
        if isinstance(self.min_p, bool) or not isinstance(self.min_p, int | float):
            raise _fail("min_p", self.min_p, "a number in [0, 1) (0 = off)")
        if not 0 <= self.min_p < 1:
            raise _fail("min_p", self.min_p, "a number in [0, 1) (0 = off)")
        if not _is_int(self.n) or self.n < 1:
            raise _fail("n", self.n, "an integer >= 1")
        if not _is_int(self.max_new_tokens) or self.max_new_tokens <= 0:
            raise _fail("max_new_tokens", self.max_new_tokens, "an integer > 0")
        if self.eos_ids is not None:
            ids = tuple(self.eos_ids) if isinstance(self.eos_ids, list | tuple) else None
            if ids is None or not all(_is_int(i) and i >= 0 for i in ids):
                raise _fail("eos_ids", self.eos_ids, "None or a tuple of token ids >= 0")
            object.__setattr__(self, "eos_ids", tuple(int(i) for i in ids))
        if not _is_int(self.seed):
            raise _fail("seed", self.seed, "an integer")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
