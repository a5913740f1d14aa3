"""Affine parametrisations ``A(θ) = A₀ + Σ_k θ_k A_k`` and ``b(θ) = b₀ + B θ``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._checks import real_array, refuse_complex
from ..problem.rhs import RightHandSide
from ..problem.structure import Structure
from ._matrices import as_coo, as_sparse
from .assembled import SYMMETRY_RTOL, AssembledOperator
from .pattern import SparsityPattern

__all__ = ["AffineOperator", "affine_operator", "affine_rhs"]


class AffineOperator(AssembledOperator):
    """``A(θ) = A₀ + Σ_k θ_k A_k`` stored as ``values(θ) = v₀ + G θ`` on the union pattern.

    ``G`` (nnz × P, sparse) is the *value map*: column k holds the values of ``A_k`` on the
    union of the patterns of ``A₀, …, A_P``. Assembly, VJP and JVP are one sparse product each,
    whatever P:

        values(θ) = v₀ + G θ,   vjp = Gᵀ (λ_i x_j on the pattern),   jvp values = G dθ.

    ∂A/∂θ does not depend on θ, so ``vjp_jvp`` is zero, and ``jvp_transpose(θ, y, dθ) =
    (Σ_k dθ_k A_k)ᵀ y`` (the values G dθ on the transposed pattern).

    Build it with :func:`affine_operator`.

    Attributes
    ----------
    offset : ndarray, shape (nnz,)
        v₀, the values of A₀.
    value_map : scipy.sparse.csr_matrix, shape (nnz, P)
        G.
    """

    def __init__(self, pattern: SparsityPattern, offset: np.ndarray, value_map: sp.csr_matrix,
                 *, structure: str | Structure) -> None:
        self.offset = offset
        self.value_map = value_map
        super().__init__(pattern, self._affine_values, self._affine_vjp,
                         values_jvp=self._affine_jvp, structure=structure,
                         n_params=value_map.shape[1], vjp_jvp=self._affine_vjp_jvp)

    _fresh_values = True

    def _affine_values(self, theta: np.ndarray) -> np.ndarray:
        values = self.value_map @ theta
        values += self.offset
        return values

    def _affine_vjp(self, theta: np.ndarray, values_bar: np.ndarray) -> np.ndarray:
        return self.value_map.T @ values_bar

    def _affine_jvp(self, theta: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return self.value_map @ dtheta

    def _affine_vjp_jvp(self, theta: np.ndarray, x: np.ndarray, lam: np.ndarray,
                        dtheta: np.ndarray) -> np.ndarray:
        return np.zeros(self.value_map.shape[1])


def affine_operator(A0: Any, terms: Any, *, structure: str | Structure = "auto"
                    ) -> AffineOperator:
    """``A(θ) = A₀ + Σ_k θ_k A_k`` with sparse ``A_k``, merged once onto the union pattern.

    Parameters
    ----------
    A0 : sparse matrix, 2-D array, petsc4py ``Mat`` or None
        The θ-independent part (None for zero), N × N.
    terms : sequence of P matrices, a sparse matrix of shape (N², P), or an array (P, N, N)
        The ``A_k``. In the stacked sparse form, column k is ``A_k`` flattened row by row
        (entry (i, j) at row ``i N + j``), e.g. built directly from COO triplets
        ``(i N + j, k, value)`` when P is large.
    structure : {"auto", "general", "symmetric", "spd"}
        ``"auto"`` declares ``"symmetric"`` when A₀ and every A_k are symmetric (checked
        exactly on the merged values), else ``"general"``. ``"spd"`` must be declared (it
        allows CG); a declared symmetry is checked, and the error names the first matrix
        that is not symmetric (``"A0"``, ``"terms[k]"``) and its worst entry.

    Returns
    -------
    AffineOperator

    Raises
    ------
    InputError
        For a complex ``A0`` or ``A_k`` (the adapters build real systems), naming the
        matrix: ``"A0"``, ``"terms[2]"`` (``"terms"`` for the stacked form).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> A1 = sp.csr_matrix(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    >>> op = affine_operator(sp.identity(2), [A1, sp.diags([0.0, 1.0])])
    >>> op.structure.value, op.n_params, op.pattern.nnz
    ('symmetric', 2, 4)
    >>> op.matrix(np.array([2.0, 3.0])).toarray()
    array([[ 3., -2.],
           [-2.,  6.]])
    >>> op.vjp(np.zeros(2), np.array([1.0, 0.0]), np.array([1.0, 2.0]))   # λᵀ A_k x
    array([-1.,  0.])
    """
    rows, cols, vals, which, n, P = _triplets(A0, terms)
    pattern, slots = SparsityPattern.from_coordinates(rows, cols, n)
    fixed = which < 0
    offset = np.bincount(slots[fixed], weights=vals[fixed], minlength=pattern.nnz)
    G = sp.csr_matrix((vals[~fixed], (slots[~fixed], which[~fixed])), shape=(pattern.nnz, P))
    G.sum_duplicates()
    structure = _resolve_structure(structure, pattern, offset, G)
    return AffineOperator(pattern, offset, G, structure=structure)


def affine_rhs(b0: Any, B: Any) -> RightHandSide:
    """``b(θ) = b₀ + B θ`` with its VJP ``Bᵀλ``, JVP ``B dθ`` and zero ``vjp_jvp``.

    Parameters
    ----------
    b0 : array of shape (N,) or None
        The θ-independent part (None for zero).
    B : sparse matrix, 2-D array or scipy ``LinearOperator``, shape (N, P)
        A ``LinearOperator`` needs ``rmatvec`` (e.g. a source spread by a matrix-free
        operator).

    Raises
    ------
    InputError
        For a complex ``b0`` or ``B`` (the adapters build real systems).

    Examples
    --------
    A source per cell, spread by a mass matrix: ``b(θ) = M θ``.

    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> rhs = affine_rhs(None, sp.diags([2.0, 1.0]))
    >>> rhs.value(np.array([1.0, 3.0])), rhs.vjp(None, np.array([1.0, 1.0]))
    (array([2., 3.]), array([2., 1.]))
    """
    if isinstance(B, spla.LinearOperator):
        refuse_complex(B, "B")
        operator: Any = B
    else:
        matrix = as_sparse(B, "B")
        operator = sp.csr_matrix(matrix)
    if len(operator.shape) != 2:
        raise ValueError(f"B must be 2-D, got shape {operator.shape}")
    n = operator.shape[0]
    offset = None if b0 is None else real_array(b0, "b0")
    if offset is not None and offset.shape != (n,):
        raise ValueError(f"b0 has shape {offset.shape}, but B has {n} rows")
    transpose = operator.T

    def value(theta: np.ndarray) -> np.ndarray:
        out = np.asarray(operator @ np.asarray(theta, dtype=np.float64), dtype=np.float64)
        return out if offset is None else out + offset

    def vjp(theta: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return np.asarray(transpose @ np.asarray(lam, dtype=np.float64), dtype=np.float64)

    def jvp(theta: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return np.asarray(operator @ np.asarray(dtheta, dtype=np.float64), dtype=np.float64)

    def vjp_jvp(theta: np.ndarray, lam: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
        return np.zeros(operator.shape[1])

    return RightHandSide(value, vjp=vjp, jvp=jvp, vjp_jvp=vjp_jvp)


# -- helpers ---------------------------------------------------------------------
def _triplets(A0: Any, terms: Any
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """All entries of A₀ (term −1) and of each A_k (term k) as COO triplets."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    n = None
    if A0 is not None:
        coo = as_coo(A0, "A0")
        n = _square(coo.shape, "A0")
        parts.append((coo.row, coo.col, coo.data, np.full(coo.nnz, -1)))
    if sp.issparse(terms):
        refuse_complex(terms, "terms")
        stacked = sp.coo_matrix(terms)
        if n is None:
            n = int(round(np.sqrt(stacked.shape[0])))
        if stacked.shape[0] != n * n:
            raise ValueError(f"terms: a sparse matrix is read as the stacked form of shape "
                             f"(N², P) = ({n * n}, P), got {stacked.shape}; pass a list "
                             "[A1, ...] for separate matrices")
        flat = stacked.row.astype(np.int64)
        parts.append((flat // n, flat % n, stacked.data, stacked.col))
        P = stacked.shape[1]
    else:
        if isinstance(terms, np.ndarray) and terms.ndim != 3:
            raise ValueError(f"terms: an array must have shape (P, N, N), got {terms.shape}")
        if not isinstance(terms, Sequence | np.ndarray):
            raise TypeError("terms: expected a sequence of matrices, a sparse (N², P) matrix "
                            f"or an array (P, N, N), got {type(terms).__name__}")
        for k, term in enumerate(terms):
            coo = as_coo(term, f"terms[{k}]")
            size = _square(coo.shape, f"terms[{k}]")
            if n is None:
                n = size
            if size != n:
                raise ValueError(f"terms[{k}] has shape {coo.shape}, expected ({n}, {n})")
            parts.append((coo.row, coo.col, coo.data, np.full(coo.nnz, k)))
        P = len(terms)
    if n is None:
        raise ValueError("affine_operator: give A0 or at least one term (N is unknown)")
    if not parts or sum(p[0].size for p in parts) == 0:
        raise ValueError("affine_operator: the operator has no stored entries")
    rows, cols, vals, which = (np.concatenate([p[i] for p in parts]) for i in range(4))
    return (rows.astype(np.int64), cols.astype(np.int64), vals.astype(np.float64),
            which.astype(np.int64), n, P)


def _square(shape: tuple[int, ...], name: str) -> int:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{name} must be square, got shape {shape}")
    return int(shape[0])


def _resolve_structure(structure: str | Structure, pattern: SparsityPattern,
                       offset: np.ndarray, G: sp.csr_matrix) -> Structure:
    auto = isinstance(structure, str) and structure == "auto"
    symmetric = _is_symmetric(pattern, offset, G)
    if auto:
        return Structure.SYMMETRIC if symmetric else Structure.GENERAL
    declared = Structure.coerce(structure)
    if declared.is_symmetric and not symmetric:
        raise ValueError(f"affine_operator: declared symmetric ({declared.value!r}), but "
                         f"{_symmetry_culprit(pattern, offset, G)}; declare "
                         "structure='general'")
    return declared


def _symmetry_culprit(pattern: SparsityPattern, offset: np.ndarray, G: sp.csr_matrix) -> str:
    """Which of A₀, A_1, … breaks the symmetry, and how (for the error message).

    The values are compared on the symmetric closure of the merged pattern (an entry missing
    on one side counts as zero), so a term is blamed for its own values only, whatever the
    other terms store. When every term is symmetric in value, the culprit is the term storing
    an entry (i, j) whose (j, i) is stored by no term.
    """
    rows, cols, nnz = pattern.rows.astype(np.int64), pattern.indices.astype(np.int64), pattern.nnz
    closure, slots = SparsityPattern.from_coordinates(np.concatenate([rows, cols]),
                                                      np.concatenate([cols, rows]), pattern.n)
    place = slots[:nnz]  # position of each merged entry in the closure
    perm = closure.transpose_permutation
    scale = max(float(np.max(np.abs(offset), initial=0.0)),
                float(np.max(np.abs(G.data), initial=0.0)))
    tolerance = SYMMETRY_RTOL * scale
    values = np.zeros(closure.nnz)
    values[place] = offset
    defect = np.abs(values - values[perm])
    if defect.max(initial=0.0) > tolerance:
        return _asymmetric_entry("A0", defect, closure)
    embed = sp.csr_matrix((np.ones(nnz), (place, np.arange(nnz))), shape=(closure.nnz, nnz))
    terms = (embed @ G).tocsr()
    column_defects = abs(terms[perm] - terms).tocsc()
    worst = np.asarray(column_defects.max(axis=0).todense()).ravel()
    bad = np.flatnonzero(worst > tolerance)
    if bad.size:
        k = int(bad[0])
        others = f" (and {bad.size - 1} other term(s))" if bad.size > 1 else ""
        column = column_defects[:, [k]].toarray().ravel()
        return _asymmetric_entry(f"terms[{k}]", column, closure) + others
    present = np.zeros(closure.nnz, dtype=bool)
    present[place] = True
    lonely = int(np.flatnonzero(present & ~present[perm])[0])
    slot = int(np.flatnonzero(place == lonely)[0])
    stored = G.indices[G.indptr[slot]:G.indptr[slot + 1]]
    name = f"terms[{int(stored[0])}]" if stored.size else "A0"
    i, j = int(closure.rows[lonely]), int(closure.indices[lonely])
    return (f"{name} stores the entry ({i}, {j}) and no matrix stores ({j}, {i}): the merged "
            "sparsity pattern is not structurally symmetric")


def _asymmetric_entry(name: str, defect: np.ndarray, closure: SparsityPattern) -> str:
    worst = int(np.argmax(defect))
    i, j = int(closure.rows[worst]), int(closure.indices[worst])
    return (f"{name} is not symmetric: |{name}[{i}, {j}] − {name}[{j}, {i}]| = "
            f"{float(defect[worst]):.3e}")


def _is_symmetric(pattern: SparsityPattern, offset: np.ndarray, G: sp.csr_matrix) -> bool:
    if not pattern.is_structurally_symmetric:
        return False
    scale = max(float(np.max(np.abs(offset), initial=0.0)),
                float(np.max(np.abs(G.data), initial=0.0)))
    if pattern.symmetry_defect(offset) > SYMMETRY_RTOL * scale:
        return False
    defect = (G[pattern.transpose_permutation] - G).tocsr()
    return float(np.max(np.abs(defect.data), initial=0.0)) <= SYMMETRY_RTOL * scale
