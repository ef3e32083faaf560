"""Activation sharding constraints that need no mesh argument in model code.

The caller sets the mesh around tracing:

    with use_mesh(mesh):
        logits = jitted_forward(params, batch)

and the model writes `h = constrain(h, batch_spec())` on its activations. Without a mesh in
context `constrain` returns its input unchanged, so the same model code runs on one device.
`use_mesh` is `jax.set_mesh`: the mesh in context is part of jit's cache key, so a function
traced without a mesh is traced again (with its constraints) under one, never reused stale.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jalign.sharding.specs import check_axes, check_fits, format_spec


@contextlib.contextmanager
def use_mesh(mesh: Mesh | None) -> Iterator[Mesh | None]:
    """Make `mesh` the active mesh (None: none) for the block; call outside of jit."""
    with jax.set_mesh(mesh):
        yield mesh


def constrain(x: jax.Array, spec: PartitionSpec) -> jax.Array:
    """`x` constrained to `spec` on the active mesh (`use_mesh`); `x` itself when none is set.

    `spec` may be shorter than `x`'s rank (trailing dimensions replicated). Raises
    `JalignError` when the spec names an axis the mesh lacks or splits a dimension unevenly.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    origin = f"sharding constraint {format_spec(spec)}"
    check_axes(spec, mesh, origin)
    check_fits(
        spec,
        x.shape,
        mesh,
        subject=f"an activation of shape {tuple(x.shape)}",
        origin=origin,
        fix="Make that dimension (e.g. the batch size) a multiple of the split.",
    )
    # Inside a trace only the abstract mesh is known; eagerly the concrete devices are needed.
    target = mesh if isinstance(x, jax.core.Tracer) else jax.sharding.get_mesh()
    return jax.lax.with_sharding_constraint(x, NamedSharding(target, spec))
