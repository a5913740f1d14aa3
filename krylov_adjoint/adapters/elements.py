"""Finite-element style operators ``K(θ) = Σ_e s(ρ_e) K_e``, ρ = θ or a map of θ."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._checks import as_size, refuse_complex
from ..problem.rhs import RightHandSide
from ..problem.structure import Structure
from ._element_map import ElementSlots, element_slots
from ._matrices import as_sparse
from .assembled import SYMMETRY_RTOL, AssembledOperator
from .scaling import Scaling, as_scaling

__all__ = ["ElementOperator", "element_operator"]


class ElementOperator(AssembledOperator):
    """``K(θ) = Σ_e s(ρ_e) K_e`` with ρ = θ (or ρ = Hθ), Dirichlet dofs eliminated.

    Build it with :func:`element_operator`. Re-assembly at a new θ sums the E k² scaled
    element entries into their CSR slots (the slot of each entry is found once per mesh,
    :class:`~krylov_adjoint.adapters._element_map.ElementSlots`). The VJP is computed element
    by element,

        θ̄ = Hᵀ [ s'(ρ_e) Σ_ab λ_{conn[e,a]} x_{conn[e,b]} (K_e)_ab ]_e,

    with λ and x set to zero at Dirichlet dofs: eliminated rows and columns do not depend on θ.
    Its derivative along dθ (``vjp_jvp``, when the law knows s'') is the same sum with
    ``s''(ρ_e) (H dθ)_e`` in place of ``s'(ρ_e)``; ``jvp_transpose`` applies the values of
    ∂K/∂θ·dθ transposed (equal to ``jvp`` for symmetric element matrices).

    Attributes
    ----------
    connectivity : ndarray (E, k)
    scaling : Scaling
    free : ndarray of bool (N,)
        False at Dirichlet dofs.
    assembly : ElementSlots
        The slots of the element entries: ``assembly.values(s)`` are the CSR values of
        ``Σ_e s_e K_e`` (with the unit Dirichlet diagonal), ``assembly.element_sums`` its
        transpose.
    parameter_map : sparse matrix, LinearOperator or None
        H (E × P), None for ρ = θ.
    """

    def __init__(self, connectivity: np.ndarray, element_matrices: np.ndarray, n_dofs: int,
                 scaling: Scaling, free: np.ndarray, parameter_map: Any,
                 structure: Structure) -> None:
        self.connectivity = connectivity
        self.element_matrices = element_matrices
        self.scaling = scaling
        self.free = free
        self.parameter_map = parameter_map
        self._mask = None if free.all() else free.astype(np.float64)
        n_elements, k = connectivity.shape
        entries = element_matrices.reshape(k * k) if element_matrices.ndim == 2 \
            else element_matrices.reshape(n_elements, k * k)
        pattern, slots, diagonal = element_slots(connectivity, n_dofs,
                                               None if self._mask is None else free)
        self.assembly = ElementSlots(slots, entries, diagonal, pattern.nnz)
        n_params = n_elements if parameter_map is None else parameter_map.shape[1]
        self._coefficient_key: bytes | None = None
        self._coefficients: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        super().__init__(pattern, self._element_values, self._element_values_vjp,
                         values_jvp=self._element_values_jvp, structure=structure,
                         n_params=n_params, vjp=self._element_vjp,
                         vjp_jvp=self._element_vjp_jvp if scaling.has_second else None)

    @property
    def n_elements(self) -> int:
        """E."""
        return int(self.connectivity.shape[0])

    @property
    def dirichlet_dofs(self) -> np.ndarray:
        """The eliminated dofs."""
        return np.flatnonzero(~self.free)

    # -- per-element quantities ---------------------------------------------------------
    def densities(self, theta: Any) -> np.ndarray:
        """The element densities ρ = θ, or Hθ with a parameter map."""
        return self._coefficients_at(theta)[0]

    def element_scales(self, theta: Any) -> np.ndarray:
        """The scale s(ρ_e) of each element."""
        return self._coefficients_at(theta)[1]

    def element_products(self, lam: Any, x: Any) -> np.ndarray:
        """``λ_eᵀ K_e x_e`` for each element (unscaled, no Dirichlet masking), shape (E,).

        With ``lam = x = u`` this is the element strain energy ×2 used by compliance
        sensitivities.
        """
        conn = self.connectivity
        L, X = np.asarray(lam, dtype=np.float64)[conn], np.asarray(x, dtype=np.float64)[conn]
        K = self.element_matrices
        if K.ndim == 2:
            return np.einsum("ea,ea->e", L @ K, X)
        return np.einsum("ea,eab,eb->e", L, K, X, optimize=False)

    def unconstrained_matvec(self, theta: Any, v: Any) -> np.ndarray:
        """``Σ_e s(ρ_e) K_e v`` without Dirichlet elimination (an element-by-element product)."""
        return self._scaled_matvec(self.element_scales(theta), np.asarray(v, dtype=np.float64))

    def dirichlet_rhs(self, load: Any, values: Any = 0.0) -> RightHandSide:
        """The right-hand side of the eliminated system for a load and Dirichlet values g.

        ``b(θ) = P (f − K(θ) g) + (I − P) g``, P the projection onto free dofs and K(θ) the
        matrix before elimination, so that the solution equals g at Dirichlet dofs and solves
        the free equations. With g = 0 and a fixed load this is ``P f`` (θ-independent):
        loads given at Dirichlet dofs are discarded.

        Parameters
        ----------
        load : array (N,) or RightHandSide
            The load f (a RightHandSide may depend on θ; its VJP is used).
        values : float or array (number of Dirichlet dofs,)
            The prescribed values g, in the order of :attr:`dirichlet_dofs`.

        Returns
        -------
        RightHandSide
            With VJP ``λᵀ∂b/∂θ = −Hᵀ[s'(ρ_e) (Pλ)_eᵀ K_e g_e] + (∂f/∂θ)ᵀ Pλ``, JVP, and
            ``vjp_jvp`` (s'' in place of s', times H dθ; plus the load's) when the law
            knows s''.

        Examples
        --------
        Two bars between prescribed end values 1 and 3:

        >>> import numpy as np
        >>> Ke = np.array([[1.0, -1.0], [-1.0, 1.0]])
        >>> op = element_operator(Ke, np.array([[0, 1], [1, 2]]), 3, dirichlet_dofs=[0, 2])
        >>> rhs = op.dirichlet_rhs(np.zeros(3), [1.0, 3.0])
        >>> theta = np.array([1.0, 1.0])
        >>> np.linalg.solve(op.matrix(theta).toarray(), rhs.value(theta))
        array([1., 2., 3.])
        """
        refuse_complex(values, "values")
        mask = self.free.astype(np.float64)
        g = np.zeros(self.n)
        g[~self.free] = values
        fixed_load = not (isinstance(load, RightHandSide) and load.depends_on_theta)
        f = load if not fixed_load else (
            load.value(None) if isinstance(load, RightHandSide) else load)
        if fixed_load:
            refuse_complex(f, "load")
            f = np.asarray(f, dtype=np.float64)
            if f.shape != (self.n,):
                raise ValueError(f"load has shape {f.shape}, expected ({self.n},)")
            if not g.any():
                return RightHandSide(mask * f)

        def load_at(theta: np.ndarray) -> np.ndarray:
            return f if fixed_load else np.asarray(f.value(theta), dtype=np.float64)

        def value(theta: np.ndarray) -> np.ndarray:
            return mask * (load_at(theta) - self.unconstrained_matvec(theta, g)) + g

        def vjp(theta: np.ndarray, lam: np.ndarray) -> np.ndarray:
            masked = mask * lam
            out = -self._pullback(theta, self.element_products(masked, g))
            if not fixed_load:
                out = out + np.asarray(f.vjp(theta, masked), dtype=np.float64)
            return out

        def jvp(theta: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
            _, _, ds = self._coefficients_at(theta)
            drho = self._apply_map(dtheta)
            out = -mask * self._scaled_matvec(ds * drho, g)
            if not fixed_load:
                out += mask * np.asarray(f.jvp(theta, dtheta), dtype=np.float64)
            return out

        def vjp_jvp(theta: np.ndarray, lam: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
            masked = mask * lam
            out = -self._second_pullback(theta, dtheta, self.element_products(masked, g))
            if not fixed_load:
                out = out + np.asarray(f.vjp_jvp(theta, masked, dtheta), dtype=np.float64)
            return out

        return RightHandSide(value, vjp=vjp, jvp=jvp,
                             vjp_jvp=vjp_jvp if self.scaling.has_second else None)

    # -- value map callbacks -------------------------------------------------------------
    _fresh_values = True

    def _element_values(self, theta: np.ndarray) -> np.ndarray:
        return self.assembly.values(self._coefficients_at(theta)[1])

    def _element_values_vjp(self, theta: np.ndarray, values_bar: np.ndarray) -> np.ndarray:
        return self._pullback(theta, self.assembly.element_sums(values_bar))

    def _element_values_jvp(self, theta: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        _, _, ds = self._coefficients_at(theta)
        return self.assembly.scaled_sum(ds * self._apply_map(dtheta))

    def _element_vjp(self, theta: np.ndarray, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
        if self._mask is not None:
            x, lam = x * self._mask, lam * self._mask
        return self._pullback(theta, self.element_products(lam, x))

    def _element_vjp_jvp(self, theta: np.ndarray, x: np.ndarray, lam: np.ndarray,
                         dtheta: np.ndarray) -> np.ndarray:
        if self._mask is not None:
            x, lam = x * self._mask, lam * self._mask
        return self._second_pullback(theta, dtheta, self.element_products(lam, x))

    # -- helpers -------------------------------------------------------------------------
    def _pullback(self, theta: np.ndarray, products: np.ndarray) -> np.ndarray:
        """θ̄ from per-element ``∂/∂s_e`` values: ``Hᵀ (s'(ρ) ⊙ products)``."""
        _, _, ds = self._coefficients_at(theta)
        return self._map_transpose(ds * products)

    def _second_pullback(self, theta: np.ndarray, dtheta: np.ndarray,
                         products: np.ndarray) -> np.ndarray:
        """The derivative of :meth:`_pullback` along dθ: ``Hᵀ (s''(ρ) ⊙ H dθ ⊙ products)``."""
        rho = self._coefficients_at(theta)[0]
        d2s = self.scaling.second_derivative(rho)
        return self._map_transpose(d2s * self._apply_map(dtheta) * products)

    def _map_transpose(self, rho_bar: np.ndarray) -> np.ndarray:
        if self.parameter_map is None:
            return rho_bar
        return np.asarray(self.parameter_map.T @ rho_bar, dtype=np.float64).ravel()

    def _apply_map(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        if self.parameter_map is None:
            return theta
        return np.asarray(self.parameter_map @ theta, dtype=np.float64).ravel()

    def _scaled_matvec(self, scales: np.ndarray, v: np.ndarray) -> np.ndarray:
        conn = self.connectivity
        V = v[conn]
        K = self.element_matrices
        local = V @ K.T if K.ndim == 2 else np.einsum("eab,eb->ea", K, V)
        local *= scales[:, None]
        return np.bincount(conn.ravel(), weights=local.ravel(), minlength=self.n)

    def _coefficients_at(self, theta: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta has shape {theta.shape}, expected ({self.n_params},)")
        key = theta.tobytes()
        if key != self._coefficient_key or self._coefficients is None:
            rho = self._apply_map(theta)
            s, ds = self.scaling.both(rho)
            self._coefficients, self._coefficient_key = (rho, s, ds), key
        return self._coefficients


def element_operator(element_matrices: Any, connectivity: Any, n_dofs: int, *,
                     scaling: Any = "linear", simp_penalty: float = 3.0,
                     simp_eps: float = 1e-9, dirichlet_dofs: Any = None,
                     parameter_map: Any = None, structure: str | Structure = "auto"
                     ) -> ElementOperator:
    """``K(θ) = Σ_e s(ρ_e) K_e``, one parameter per element, assembled through a fixed map.

    Parameters
    ----------
    element_matrices : array (k, k) or (E, k, k)
        One reference matrix shared by all elements (the fast, memory-light path: a regular
        mesh) or one matrix per element.
    connectivity : int array (E, k)
        The global dofs of each element, in the order of the rows of ``K_e`` (for 2-D
        elasticity with k = 8: ``[2 n₀, 2 n₀ + 1, 2 n₁, …]``).
    n_dofs : int
        N. Every dof must belong to an element or be a Dirichlet dof.
    scaling : {"linear", "exp", "simp"}, Scaling, ``(s, ds)``, ``(s, ds, d2s)`` or callable
        ``rho -> (s, ds)``. The law s. ``"simp"`` is ``ε + (1 − ε) ρᵖ``; ``"exp"`` is
        ``exp(ρ)``. The operator's ``vjp_jvp`` (Hessian-vector products) needs s'', known
        for the named laws: give a user law as a triple ``(s, ds, d2s)``.
    simp_penalty, simp_eps : float
        The penalty p and the floor ε of ``"simp"``.
    dirichlet_dofs : int array or bool mask (N,), optional
        Eliminated dofs: their rows and columns are removed and a unit diagonal put in, so
        the matrix keeps its symmetry (and definiteness). Those entries do not depend on θ,
        so the gradient sees only free dofs (λ and x are zeroed there). The right-hand side
        must equal the prescribed values there: use :meth:`ElementOperator.dirichlet_rhs`.
    parameter_map : sparse matrix, 2-D array or LinearOperator (E, P), optional
        The map H of ρ = H θ, e.g. a density filter; the VJP applies Hᵀ.
    structure : {"auto", "general", "symmetric", "spd"}
        ``"auto"`` is ``"symmetric"`` when the element matrices are (relative tolerance
        1e-12). Declare ``"spd"`` (allows CG) when s > 0 and the constrained K_e sum is SPD.

    Returns
    -------
    ElementOperator

    Examples
    --------
    Three 1-D bar elements with conductivities θ, left end fixed:

    >>> import numpy as np
    >>> Ke = np.array([[1.0, -1.0], [-1.0, 1.0]])
    >>> conn = np.array([[0, 1], [1, 2], [2, 3]])
    >>> op = element_operator(Ke, conn, 4, dirichlet_dofs=[0], structure="spd")
    >>> op.matrix(np.array([1.0, 2.0, 3.0])).toarray()
    array([[ 1.,  0.,  0.,  0.],
           [ 0.,  3., -2.,  0.],
           [ 0., -2.,  5., -3.],
           [ 0.,  0., -3.,  3.]])
    >>> x = np.array([0.0, 1.0, 3.0, 6.0])
    >>> op.vjp(np.ones(3), x, x)             # (x_{e+1} − x_e)², the fixed dof set to 0
    array([1., 4., 9.])
    """
    refuse_complex(element_matrices, "element_matrices")
    K = np.asarray(element_matrices, dtype=np.float64)
    conn = np.asarray(connectivity)
    n = as_size(n_dofs, "n_dofs", minimum=1)
    if conn.ndim != 2 or conn.dtype.kind not in "iu":
        raise ValueError(f"connectivity must be an integer array (E, k), got dtype "
                         f"{conn.dtype} and shape {conn.shape}")
    E, k = conn.shape
    if K.shape not in ((k, k), (E, k, k)):
        raise ValueError(f"element_matrices must have shape ({k}, {k}) or ({E}, {k}, {k}) "
                         f"for a connectivity of shape {conn.shape}, got {K.shape}")
    if not np.isfinite(K).all():
        raise ValueError("element_matrices contain non-finite values")
    if n <= 0 or (conn.size and (conn.min() < 0 or conn.max() >= n)):
        raise ValueError(f"connectivity entries must lie in [0, n_dofs) = [0, {n})")
    free = _free_mask(dirichlet_dofs, n)
    used = np.bincount(conn.ravel(), minlength=n) > 0
    orphans = np.flatnonzero(~used & free)
    if orphans.size:
        raise ValueError(f"{orphans.size} dof(s) belong to no element and are not Dirichlet "
                         f"dofs (first: {orphans[0]}): K(θ) would be singular; add them to "
                         "dirichlet_dofs or fix n_dofs")
    H = _parameter_map(parameter_map, E)
    law = as_scaling(scaling, simp_penalty=simp_penalty, simp_eps=simp_eps)
    K = np.array(K, copy=True)
    K.flags.writeable = False
    conn = np.array(conn, dtype=np.int32 if n < np.iinfo(np.int32).max else np.int64)
    conn.flags.writeable = False
    return ElementOperator(conn, K, n, law, free, H, _element_structure(structure, K))


def _free_mask(dirichlet_dofs: Any, n: int) -> np.ndarray:
    free = np.ones(n, dtype=bool)
    if dirichlet_dofs is None:
        return free
    dofs = np.asarray(dirichlet_dofs)
    if dofs.dtype == bool:
        if dofs.shape != (n,):
            raise ValueError(f"a boolean dirichlet_dofs mask must have shape ({n},), got "
                             f"{dofs.shape}")
        free[dofs] = False
        return free
    dofs = dofs.ravel()
    if dofs.size and (dofs.dtype.kind not in "iu" or dofs.min() < 0 or dofs.max() >= n):
        raise ValueError(f"dirichlet_dofs must be integers in [0, {n}) or a boolean mask")
    free[dofs] = False
    return free


def _parameter_map(H: Any, n_elements: int) -> Any:
    if H is None:
        return None
    refuse_complex(H, "parameter_map")
    if not isinstance(H, spla.LinearOperator):
        converted = as_sparse(H, "parameter_map")
        H = sp.csr_matrix(converted) if sp.issparse(converted) else converted
    if len(H.shape) != 2 or H.shape[0] != n_elements:
        raise ValueError(f"parameter_map must have shape ({n_elements}, P), got {H.shape}")
    return H


def _element_structure(structure: str | Structure, K: np.ndarray) -> Structure:
    defect = float(np.max(np.abs(K - np.swapaxes(K, -1, -2)), initial=0.0))
    symmetric = defect <= SYMMETRY_RTOL * float(np.max(np.abs(K), initial=0.0))
    if isinstance(structure, str) and structure == "auto":
        return Structure.SYMMETRIC if symmetric else Structure.GENERAL
    declared = Structure.coerce(structure)
    if declared.is_symmetric and not symmetric:
        raise ValueError(f"element_operator: declared {declared.value!r}, but the element "
                         f"matrices are not symmetric (max |K_e − K_eᵀ| = {defect:.3e})")
    return declared
