"""Numba kernels behind :func:`solvers.allocate` and :func:`solvers.round_greedy`.

Everything here assumes validated, contiguous float64 input (see ``solvers/allocation.py``).
Cost families are passed as small integer codes (:data:`RLOO`, :data:`DRGRPO`, :data:`INVERSE`).

Conventions used throughout (``a >= 0``, ``n`` the rollout count):

* value ``f(n)``: ``a/(n-1)`` (rloo), ``a(n-1)/n^2`` (drgrpo), ``a/n`` (inverse);
* marginal decrease ``-f'(n)`` ("marginal"), the quantity the budget price ``lambda`` is compared with:
  ``a/(n-1)^2``, ``a(n-2)/n^3``, ``a/n^2``;
* integer gain ``f(n) - f(n+1)``, computed in a cancellation-free closed form:
  ``a/((n-1)n)``, ``a(n^2-n-1)/(n^2(n+1)^2)``, ``a/(n(n+1))``.

Kernels are compiled with ``error_model="numpy"``: IEEE division (``x/0 -> inf``) instead of
Python's ``ZeroDivisionError`` (denormal ``a`` can make ``a*s*s`` underflow to 0); no fastmath, so
inf/NaN keep their meaning and the certificate rejects any non-finite result.

The pure-Python twin of every kernel is its ``.py_func`` (Numba keeps the undecorated function);
``tests/test_allocation.py`` runs both on the same inputs, next to independent references.

First-call (compile) cost: a cold ``allocate`` compiles only what its mode and cost need. The
continuous and integer parts are separate kernels (glued in Python by :func:`allocate_kernel`);
the drgrpo cubic and the integer heap-greedy fallback are behind ``drgrpo``/``greedy`` arguments
that are None when not needed (Numba prunes ``x is None`` branches before typing); literal
arguments (``0``, ``True``) are avoided where they would compile extra specialisations; and the
rare sorts use the small heapsorts below instead of Numba's ``np.sort``/mergesort machinery.
"""

from __future__ import annotations

import math

import numba
import numpy as np

RLOO = 0
DRGRPO = 1
INVERSE = 2

# detail codes returned by the certificate checks (mapped to messages in allocation.py)
CERT_OK = 0
CERT_NONFINITE = 1
CERT_BOUNDS = 2
CERT_SUM = 3
CERT_MARGINAL = 4
CERT_EXCHANGE = 5
CERT_INPUT = -1

_SUM_RTOL = 1e-9
_MARGINAL_RTOL = 1e-7
_EXCHANGE_RTOL = 1e-12
_MAX_GREEDY_UNITS = 2**26  # the last-resort greedy from the lower bounds places units one at a time
_LEVEL_SAMPLE = 16384  # prompts sampled by the drgrpo starting level (all of them below 2x that)


@numba.njit(cache=True, error_model="numpy")
def inputs_ok(code, a, lower, upper, budget, integer):
    """One-pass check that validated input needs no error message (fast path of the wrapper):
    a finite and >= 0, lower finite and admissible for the cost, upper not NaN, lower <= upper,
    integral bounds when ``integer``, and sum(lower) <= budget <= sum(upper)."""
    lo_sum = 0.0
    hi_sum = 0.0
    for q in range(a.size):
        aq = a[q]
        lq = lower[q]
        uq = upper[q]
        if not (aq >= 0.0 and aq < np.inf and lq > -np.inf and lq < np.inf and lq <= uq):
            return False
        if code == RLOO:
            if not (lq > 1.0):
                return False
        elif code == DRGRPO:
            if not (lq >= 3.0):
                return False
        elif not (lq > 0.0):
            return False
        if integer and (math.floor(lq) != lq or (uq < np.inf and math.floor(uq) != uq)):
            return False
        lo_sum += lq
        hi_sum += uq
    return lo_sum <= budget and budget <= hi_sum


@numba.njit(cache=True, error_model="numpy")
def cost_value(code, a, n):
    """f(n) for one prompt (0 when a == 0, whatever n is)."""
    if a == 0.0:
        return 0.0
    if code == RLOO:
        return a / (n - 1.0)
    if code == DRGRPO:
        return a * ((n - 1.0) / (n * n))  # a last: no overflow for a near DBL_MAX
    return a / n


@numba.njit(cache=True, error_model="numpy")
def cost_marginal(code, a, n):
    """-f'(n): the marginal decrease of the cost per extra rollout (0 when a == 0 or n == inf)."""
    if a == 0.0 or n == np.inf:
        return 0.0
    if code == RLOO:
        return a / ((n - 1.0) * (n - 1.0))
    if code == DRGRPO:
        return a * ((n - 2.0) / (n * n * n))
    return a / (n * n)


@numba.njit(cache=True, error_model="numpy")
def cost_gain(code, a, n):
    """f(n) - f(n+1) in closed form (no cancellation)."""
    if a == 0.0:
        return 0.0
    if code == RLOO:
        return a / ((n - 1.0) * n)
    if code == DRGRPO:
        return a * ((n * n - n - 1.0) / (n * n * (n + 1.0) * (n + 1.0)))
    return a / (n * (n + 1.0))


@numba.njit(cache=True, error_model="numpy")
def drgrpo_inverse(y):
    """The root n >= 3 of (n - 2)/n^3 = y for 0 < y <= 1/27 (inf for y <= 0).

    Closed form of the cubic y n^3 - n + 2 = 0 (three real roots; the largest is the one >= 3):
    n = 2/sqrt(3y) * cos(arccos(-3 sqrt(3y)) / 3), then polished by guarded Newton steps.
    """
    if y <= 0.0:
        return np.inf
    if y >= 1.0 / 27.0:
        return 3.0
    r = math.sqrt(3.0 * y)
    t = -3.0 * r
    if t < -1.0:
        t = -1.0
    n = 2.0 / r * math.cos(math.acos(t) / 3.0)
    if n < 3.0:
        n = 3.0
    if n > 4.0:
        # far from the double root at n = 3 the trigonometric form is accurate to a few ulp
        return n
    for _ in range(3):
        g = (n - 2.0) / (n * n * n) - y
        dg = (6.0 - 2.0 * n) / (n * n * n * n)
        if dg == 0.0:
            break
        step = g / dg
        nn = n - step
        if not (nn >= 3.0) or abs(step) <= 1e-16 * n:
            if nn >= 3.0:
                n = nn
            break
        n = nn
    return n


@numba.njit(cache=True, error_model="numpy")
def _drgrpo_root_warm(y, guess):
    """drgrpo_inverse(y) by Newton on the cubic F(n) = y n^3 - n + 2 from ``guess`` (a nearby
    root), used when ``guess >= 4`` (F' = (2n - 6)/n > 0 there, well away from the double root at
    n = 3) and a step falls below 1e-8 n within four steps (quadratic convergence then leaves a
    relative error ~1e-16); otherwise the closed form."""
    if guess >= 4.0:
        n = guess
        for _ in range(4):
            n2 = n * n
            step = ((y * n2 - 1.0) * n + 2.0) / (3.0 * y * n2 - 1.0)
            n -= step
            if not (n >= 4.0):
                break
            if abs(step) <= 1e-8 * n:
                return n
    return drgrpo_inverse(y)


@numba.njit(cache=True, error_model="numpy")
def inverse_marginal(code, a, lam, lo, hi):
    """The n in [lo, hi] with -f'(n) = lam, clipped to the bounds (a > 0 assumed)."""
    if lam <= 0.0:
        return hi
    if code == RLOO:
        n = 1.0 + math.sqrt(a / lam)
    elif code == INVERSE:
        n = math.sqrt(a / lam)
    else:
        n = drgrpo_inverse(lam / a)
    if n < lo:
        return lo
    if n > hi:
        return hi
    return n


@numba.njit(cache=True, error_model="numpy")
def _count_at(c, root, s, lo, hi):
    """n_q = clip(c + s sqrt(a_q), lo, hi) at the level s = lambda**-0.5 (rloo: c = 1, inverse:
    c = 0), the same expression as in :func:`price_search`; drgrpo counts are computed there.
    (``c`` is a float, not the cost code: a float constant is not a literal type, so every call
    shares one compiled specialisation.)"""
    n = c + s * root
    if n <= lo:
        return lo
    if n >= hi:
        return hi
    return n


@numba.njit(cache=True, error_model="numpy")
def _bracket_point(lo, hi, s):
    """Fallback point strictly inside the bracket (lo, hi) when a Newton step leaves it:
    x256 while ``hi`` is infinite, /256 while ``lo`` is 0, the geometric mean while the bracket
    spans more than a factor 4 (levels of prompts whose ``a`` differ by hundreds of orders of
    magnitude), the midpoint otherwise."""
    if hi == np.inf:
        return 256.0 * s
    if lo > 0.0 and hi > 4.0 * lo:
        return math.sqrt(lo) * math.sqrt(hi)
    nxt = hi / 256.0 if lo <= 0.0 else 0.5 * (lo + hi)
    if not (nxt > lo and nxt < hi):
        nxt = 0.5 * (lo + hi)
    return nxt


@numba.njit(cache=True, error_model="numpy")
def _drgrpo_start_level(a, root, lower, upper, target, s, stride):
    """Starting level for the drgrpo price search: the root of
    sum_{a_k > 0} clip(t_k - 1 - 1.5/t_k, L_k, U_k) = target with t_k = s sqrt(a_k), by
    safeguarded Newton. ``t - 1 - 1.5/t`` is the large-n expansion of the drgrpo count (the root
    of t^2 = n^3/(n - 2), i.e. n^2 + 2n + 4 + O(1/n) = t^2), so this level is within O(1/n^2) of
    the exact one. With ``stride > 1`` the sum is estimated from every stride-th prompt (scaled
    up): a start needs no more, and each pass then reads a fraction of the memory."""
    lo = 0.0
    hi = np.inf
    scale = a.size / len(range(0, a.size, stride))
    for _ in range(100):
        total = 0.0
        slope = 0.0
        for k in range(0, a.size, stride):
            if a[k] == 0.0:
                continue
            t = s * root[k]
            n = t - 1.0 - 1.5 / t
            if n <= lower[k]:
                total += lower[k]
            elif n >= upper[k]:
                total += upper[k]
            else:
                total += n
                slope += root[k] * (1.0 + 1.5 / (t * t))
        total *= scale
        slope *= scale
        err = total - target
        if abs(err) <= 1e-12 * max(1.0, abs(target)):
            break
        if err < 0.0:
            lo = s
        else:
            hi = s
        if hi < np.inf and hi - lo <= 1e-15 * hi:
            break
        nxt = s - err / slope if slope > 0.0 else -1.0
        if not (nxt > lo and nxt < hi):
            nxt = _bracket_point(lo, hi, s)
        s = nxt
    return s


_AT_LOWER = 0
_AT_UPPER = 1
_NEWTON_OK = 2
_NEEDS_CLOSED_FORM = 3


@numba.njit(cache=True, error_model="numpy")
def _drgrpo_pass_roots(a, root, lower, upper, s, guess, out_n, out_class):
    """One drgrpo pass of the price search at level ``s``, without reductions or early exits so
    that LLVM vectorises it (about 10x faster than the per-prompt branchy loop at B = 10^6).

    For every prompt: ``y = 1/(a s^2)``; ``out_class`` is _AT_LOWER when ``y >= g(L)``,
    _AT_UPPER when ``y <= g(U)`` (g(n) = (n-2)/n^3, the same expressions, bit for bit, as in
    :func:`solve_continuous`), otherwise _NEWTON_OK or _NEEDS_CLOSED_FORM. ``out_n`` holds the
    result of exactly four Newton steps on F(n) = y n^3 - n + 2 from ``guess`` (or, where
    ``guess < 0``, from the large-n expansion t - 1 - 1.5/t, t = s sqrt(a)); it is trusted
    (_NEWTON_OK) only if every iterate stayed >= 4 (F' > 0 there, far from the double root at
    n = 3) and the last step was <= 1e-8 n (quadratic convergence then leaves ~1e-16), as in
    :func:`_drgrpo_root_warm`; otherwise the caller uses the closed form. Prompts with a = 0
    get some class and are ignored by the caller."""
    for k in range(a.size):
        y = 1.0 / ((a[k] * s) * s)  # not (1/a) / s^2: 1/a and s^2 overflow for a < 1/DBL_MAX
        lk = lower[k]
        u = upper[k]
        g_lower = (lk - 2.0) / (lk * lk * lk)
        g_upper = (u - 2.0) / (u * u * u) if u < np.inf else 0.0
        n = guess[k]
        if n < 0.0:
            t = s * root[k]
            n = t - 1.0 - 1.5 / t
        lowest = n
        step = 0.0
        for _ in range(4):
            n2 = n * n
            step = ((y * n2 - 1.0) * n + 2.0) / (3.0 * y * n2 - 1.0)
            n -= step
            lowest = min(lowest, n)
        out_n[k] = n
        good = lowest >= 4.0 and abs(step) <= 1e-8 * n
        if y >= g_lower:
            out_class[k] = _AT_LOWER
        elif y <= g_upper:
            out_class[k] = _AT_UPPER
        elif good:
            out_class[k] = _NEWTON_OK
        else:
            out_class[k] = _NEEDS_CLOSED_FORM


@numba.njit(cache=True, error_model="numpy")
def _price_search(code, a, root, lower, upper, target, level_zeros, drgrpo):
    """Level s* = lambda*^(-1/2) with sum_q n_q(s*) = target over the selected prompts.

    Selected prompts: those with a_q > 0 (``level_zeros`` False; ``root`` = sqrt(a)), or those
    with a_q == 0 treated as "inverse" with unit weight (``level_zeros`` True: the common water
    level n_q = clip(s, L_q, U_q) that spreads leftover budget evenly). Other prompts are ignored.

    In the variable s = 1/sqrt(lambda) the KKT counts of Thm 5.2 are piecewise linear,
    n_q(s) = clip(c + s sqrt(a_q), L_q, U_q) (c = 1 for rloo, 0 for inverse), and those of
    Thm 5.1 (drgrpo, n solving a (n-2)/n^3 = 1/s^2) are close to linear; the total S(s) is
    continuous and non-decreasing. Safeguarded Newton on S(s) = target inside a shrinking bracket
    (midpoint/doubling fallback): on a linear piece Newton lands on the exact root, so a handful of
    O(B) passes reach machine precision. Returns (s, converged, n_interior, roots) where, for
    drgrpo, ``roots`` holds the last unclipped roots computed (warm starts; -1 where none).

    ``drgrpo`` is None when ``code`` is not DRGRPO (see :func:`price_search`): Numba prunes the
    ``drgrpo is not None`` branches of that specialisation before typing, so the rloo/inverse
    kernels never compile the cubic's machinery.
    """
    size = a.size
    if level_zeros:
        code = INVERSE
    c = 1.0 if code == RLOO else 0.0
    m = 0
    rsum = 0.0
    for k in range(size):
        if (a[k] == 0.0) == level_zeros:
            m += 1
            rsum += 1.0 if level_zeros else root[k]
    if m == 0:
        return np.inf, True, 0, np.empty(0, dtype=np.float64)
    guess = np.empty(0, dtype=np.float64)
    work_n = np.empty(0, dtype=np.float64)
    work_class = np.empty(0, dtype=np.int8)
    if drgrpo is not None and code == DRGRPO:
        guess = np.empty(size, dtype=np.float64)
        for k in range(size):  # -1: no root yet (np.full compiles an extra helper)
            guess[k] = -1.0
        work_n = np.empty(size, dtype=np.float64)
        work_class = np.empty(size, dtype=np.int8)
    lo = 0.0
    hi = np.inf
    s = (target - c * m) / rsum
    if not (s > 0.0):
        s = 1.0
    if drgrpo is not None and code == DRGRPO:
        s = _drgrpo_start_level(a, root, lower, upper, target, s, max(1, size // _LEVEL_SAMPLE))
        if not (s > 0.0 and s < np.inf):
            s = 1.0
    tol = 1e-13 * max(1.0, abs(target))
    ni = 0
    for _ in range(300):
        total = 0.0
        slope = 0.0
        ni = 0
        if drgrpo is not None and code == DRGRPO:
            # prompt k is at L when 1/(a s^2) >= g(L), at U when <= g(U) (g(n) = (n-2)/n^3 is
            # decreasing on [3, inf)); interior prompts need the root, warm-started. The roots
            # and classes come from a vectorised pass, the sums from this scalar one.
            _drgrpo_pass_roots(a, root, lower, upper, s, guess, work_n, work_class)
            for k in range(size):
                if a[k] == 0.0:
                    continue
                cls = work_class[k]
                if cls == _AT_LOWER:
                    total += lower[k]
                elif cls == _AT_UPPER:
                    total += upper[k]
                else:
                    y = 1.0 / ((a[k] * s) * s)
                    n = work_n[k] if cls == _NEWTON_OK else drgrpo_inverse(y)
                    guess[k] = n
                    n = min(max(n, lower[k]), upper[k])
                    total += n
                    # dn/ds from y n^3 - n + 2 = 0 with dy/ds = -2y/s
                    n2 = n * n
                    slope += 2.0 * y * n2 * n / (s * (3.0 * y * n2 - 1.0))
                    ni += 1
        else:  # the same as _count_at, written out for speed: n = c + s sqrt(a), clipped
            for k in range(size):
                if (a[k] == 0.0) != level_zeros:
                    continue
                r = 1.0 if level_zeros else root[k]
                n = c + s * r
                if n <= lower[k]:
                    total += lower[k]
                elif n >= upper[k]:
                    total += upper[k]
                else:
                    total += n
                    slope += r
                    ni += 1
        err = total - target
        if abs(err) <= tol:
            return s, True, ni, guess
        if err < 0.0:
            lo = s
        else:
            hi = s
        if hi < np.inf and hi - lo <= 2e-16 * hi:
            return s, True, ni, guess
        nxt = s - err / slope if slope > 0.0 else -1.0
        if not (nxt > lo and nxt < hi):
            nxt = _bracket_point(lo, hi, s)
        s = nxt
    return s, False, ni, guess


@numba.njit(cache=True, error_model="numpy")
def _solve_continuous(code, a, lower, upper, budget, drgrpo):
    """Exact minimiser of sum f(n_q) s.t. sum n = budget, lower <= n <= upper (feasible input).

    Returns (n, price, converged). Prompts with a == 0 sit at their lower bound when the price is
    positive. The price is 0 only when every a > 0 prompt is at its (finite) upper bound; then the
    leftover budget goes to the a == 0 prompts as evenly as possible (a common water level
    n = clip(w, lower, upper), i.e. the "inverse" solve with a = 1 on those prompts).
    ``drgrpo``: as in :func:`_price_search` (None unless ``code`` is DRGRPO).
    """
    size = a.size
    n = np.empty(size, dtype=np.float64)
    root = np.empty(size, dtype=np.float64)
    top = 0.0
    zero_lower = 0.0
    pos_upper = 0.0
    for q in range(size):
        root[q] = math.sqrt(a[q])
        if a[q] > 0.0:
            top += upper[q]
            pos_upper += upper[q]
        else:
            top += lower[q]
            zero_lower += lower[q]
    # a runtime bool, not the literals True/False: one compiled price_search serves both calls
    flat = budget >= top
    if flat:
        # price 0: every a > 0 prompt at its upper bound, a == 0 prompts share the rest evenly
        level, ok, _, _ = _price_search(code, a, root, lower, upper, budget - pos_upper, flat, drgrpo)
        for q in range(size):
            if a[q] > 0.0:
                n[q] = upper[q]
            else:
                n[q] = _count_at(0.0, 1.0, level, lower[q], upper[q])
        return n, 0.0, ok
    s, converged, _, roots = _price_search(code, a, root, lower, upper, budget - zero_lower, flat, drgrpo)
    snap_tol = 2e-13 * max(1.0, abs(budget - zero_lower))  # twice the search's tolerance on S(s)
    ni = 0
    for q in range(size):
        if a[q] > 0.0:
            if drgrpo is not None and code == DRGRPO:
                # the same expressions (bit for bit) as in price_search, so that a prompt the
                # search put at a bound is at that bound here
                y = 1.0 / ((a[q] * s) * s)
                u = upper[q]
                if y >= (lower[q] - 2.0) / (lower[q] * lower[q] * lower[q]):
                    n[q] = lower[q]
                elif y <= ((u - 2.0) / (u * u * u) if u < np.inf else 0.0):
                    n[q] = u
                elif converged:
                    # the search's last pass was at this s: its root is the one it summed
                    n[q] = min(max(roots[q], lower[q]), u)
                else:
                    n[q] = min(max(_drgrpo_root_warm(y, roots[q]), lower[q]), u)
            else:
                n[q] = _count_at(1.0 if code == RLOO else 0.0, root[q], s, lower[q], upper[q])
            if lower[q] < n[q] < upper[q]:
                # within the search's precision of a bound (the budget sits on a breakpoint of
                # S(s), common with integer bounds and budget): at the bound, so that the price
                # below is the smallest multiplier, as documented, and not rounding's choice
                snap = snap_tol + 1e-15 * n[q]
                if upper[q] - n[q] <= snap:
                    n[q] = upper[q]
                elif n[q] - lower[q] <= snap:
                    n[q] = lower[q]
                else:
                    ni += 1
        else:
            n[q] = lower[q]
    if ni > 0:
        lam = (1.0 / s) / s  # s * s overflows for the levels of subnormal a
    else:
        # flat case: report the smallest multiplier that the KKT conditions allow
        lam = 0.0
        for q in range(size):
            if a[q] > 0.0 and n[q] == lower[q] and lower[q] < upper[q]:
                bl = cost_marginal(code, a[q], lower[q])
                if bl > lam:
                    lam = bl
    return n, lam, converged


def _drgrpo_flag(code):
    """The ``drgrpo`` argument of the internal kernels for a cost code: True for DRGRPO, else None."""
    return True if code == DRGRPO else None


@numba.njit(cache=True, error_model="numpy")
def price_search(code, a, root, lower, upper, target, level_zeros):
    """:func:`_price_search` for any cost code (see there); a test and reference entry point."""
    if code == DRGRPO:
        return _price_search(code, a, root, lower, upper, target, level_zeros, True)
    return _price_search(code, a, root, lower, upper, target, level_zeros, None)


@numba.njit(cache=True, error_model="numpy")
def solve_continuous(code, a, lower, upper, budget):
    """:func:`_solve_continuous` for any cost code (see there): returns (n, price, converged)."""
    if code == DRGRPO:
        return _solve_continuous(code, a, lower, upper, budget, True)
    return _solve_continuous(code, a, lower, upper, budget, None)


@numba.njit(cache=True, error_model="numpy")
def certify_continuous(code, a, lower, upper, budget, n, lam):
    """Post-solve certificate: finite, bounds, sum == budget, and the KKT marginal conditions
    (-f'(n_q) == lam on interior prompts, <= lam at the lower bound, >= lam at the upper bound).
    Returns (detail code, index of the first offending prompt or -1)."""
    s = 0.0
    for q in range(n.size):
        if not math.isfinite(n[q]):
            return CERT_NONFINITE, q
        if n[q] < lower[q] or n[q] > upper[q]:
            return CERT_BOUNDS, q
        s += n[q]
    if abs(s - budget) > _SUM_RTOL * max(1.0, abs(budget)):
        return CERT_SUM, -1
    if not (lam >= 0.0) or not math.isfinite(lam):
        return CERT_MARGINAL, -1
    for q in range(n.size):
        if lower[q] == upper[q]:
            continue
        g = cost_marginal(code, a[q], n[q])
        tol = _MARGINAL_RTOL * max(lam, g) + 1e-300
        if n[q] == lower[q]:
            if g > lam + tol:
                return CERT_MARGINAL, q
        elif n[q] == upper[q]:
            if g < lam - tol:
                return CERT_MARGINAL, q
        elif abs(g - lam) > tol:
            return CERT_MARGINAL, q
    return CERT_OK, -1


@numba.njit(cache=True, error_model="numpy")
def objective(code, a, n):
    """sum_q f_q(n_q)."""
    total = 0.0
    for q in range(n.size):
        total += cost_value(code, a[q], n[q])
    return total


# ---------------------------------------------------------------------------------------------
# integer allocation: greedy fill by largest gain with a binary max-heap
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def _before(gain, x, i, j, tie_by_count):
    """Heap order: larger gain first; ties by fewer rollouts (if tie_by_count), then lower index."""
    if gain[i] != gain[j]:
        return gain[i] > gain[j]
    if tie_by_count and x[i] != x[j]:
        return x[i] < x[j]
    return i < j


@numba.njit(cache=True, error_model="numpy")
def _sift_down(heap, size, pos, gain, x, tie_by_count):
    item = heap[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _before(gain, x, heap[right], heap[child], tie_by_count):
            child = right
        if _before(gain, x, heap[child], item, tie_by_count):
            heap[pos] = heap[child]
            pos = child
        else:
            break
    heap[pos] = item


@numba.njit(cache=True, error_model="numpy")
def greedy_fill(code, a, x, upper, remaining, literal_difference, tie_by_count):
    """Add ``remaining`` unit rollouts one at a time to the prompt with the largest gain
    f(x_q) - f(x_q + 1) among prompts with x_q < upper_q (in place on int64 ``x``).

    ``literal_difference`` computes the gain as the plain difference f(x) - f(x+1) (as VIP's
    Algorithm 2 writes it) instead of the closed form. Returns the number of units not placed
    (0 unless every prompt reached its upper bound).
    """
    size = x.size
    gain = np.empty(size, dtype=np.float64)
    heap = np.empty(size, dtype=np.int64)
    hs = np.int64(0)  # not the literal 0: Numba would compile _sift_down for Literal[int](0) too
    for q in range(size):
        if x[q] < upper[q]:
            xf = float(x[q])
            if literal_difference:
                gain[q] = cost_value(code, a[q], xf) - cost_value(code, a[q], xf + 1.0)
            else:
                gain[q] = cost_gain(code, a[q], xf)
            heap[hs] = q
            hs += 1
    for pos in range(hs // 2 - 1, -1, -1):
        _sift_down(heap, hs, pos, gain, x, tie_by_count)
    while remaining > 0 and hs > 0:
        q = heap[0]
        x[q] += 1
        remaining -= 1
        if x[q] < upper[q]:
            xf = float(x[q])
            if literal_difference:
                gain[q] = cost_value(code, a[q], xf) - cost_value(code, a[q], xf + 1.0)
            else:
                gain[q] = cost_gain(code, a[q], xf)
        else:
            hs -= 1
            heap[0] = heap[hs]
        if hs > 0:
            _sift_down(heap, hs, np.int64(0), gain, x, tie_by_count)
    return remaining


@numba.njit(cache=True, error_model="numpy")
def certify_integer(code, a, lower, upper, budget, x):
    """Exact optimality certificate for the separable convex integer problem (VIP eq. 5):
    x is optimal iff it is feasible and no single-unit exchange helps, i.e.
    max_{x_q < U_q} [f_q(x_q) - f_q(x_q+1)] <= min_{x_r > L_r} [f_r(x_r - 1) - f_r(x_r)].
    Returns (detail code, offending index or -1)."""
    total = 0
    best_gain = -np.inf
    least_loss = np.inf
    for q in range(x.size):
        xf = float(x[q])
        if xf < lower[q] or xf > upper[q]:
            return CERT_BOUNDS, q
        total += x[q]
        if xf < upper[q]:
            g = cost_gain(code, a[q], xf)
            if g > best_gain:
                best_gain = g
        if xf > lower[q]:
            g = cost_gain(code, a[q], xf - 1.0)
            if g < least_loss:
                least_loss = g
    if total != budget:
        return CERT_SUM, -1
    if best_gain > least_loss + _EXCHANGE_RTOL * max(abs(best_gain), abs(least_loss)):
        return CERT_EXCHANGE, -1
    return CERT_OK, -1


@numba.njit(cache=True, error_model="numpy")
def _exchange_ok_from(code, a, lower, upper, start, x, gain_at_start):
    """The exchange condition of :func:`certify_integer` for x in {start, start + 1}, given the
    gains f(start) - f(start + 1) (-inf where start == upper)."""
    best_gain = -np.inf
    least_loss = np.inf
    for q in range(x.size):
        xf = float(x[q])
        if x[q] == start[q]:
            if xf < upper[q] and gain_at_start[q] > best_gain:
                best_gain = gain_at_start[q]
            if xf > lower[q]:
                g = cost_gain(code, a[q], xf - 1.0)
                if g < least_loss:
                    least_loss = g
        else:
            if gain_at_start[q] < least_loss:
                least_loss = gain_at_start[q]
            if xf < upper[q]:
                g = cost_gain(code, a[q], xf)
                if g > best_gain:
                    best_gain = g
    return not (best_gain > least_loss + _EXCHANGE_RTOL * max(abs(best_gain), abs(least_loss)))


@numba.njit(cache=True, error_model="numpy")
def _heapsort_range(w, lo, hi):
    """Sort w[lo:hi+1] in place, ascending (heapsort: O(n log n) worst case, NaN-free input).
    Small to compile, unlike Numba's np.sort machinery; the sorted values are the same."""
    n = hi - lo + 1
    half = n // 2
    for step in range(half + n - 1):
        if step < half:  # heapify: sift down every internal node, last first
            pos = half - 1 - step
            end = n
        else:  # move the maximum behind the heap, then restore the heap on [0, end)
            end = n - 1 - (step - half)
            v = w[lo]
            w[lo] = w[lo + end]
            w[lo + end] = v
            pos = 0
        item = w[lo + pos]
        while True:
            child = 2 * pos + 1
            if child >= end:
                break
            if child + 1 < end and w[lo + child + 1] > w[lo + child]:
                child += 1
            if w[lo + child] > item:
                w[lo + pos] = w[lo + child]
                pos = child
            else:
                break
        w[lo + pos] = item


@numba.njit(cache=True, error_model="numpy")
def _stable_argsort(keys):
    """``np.argsort(keys, kind="mergesort")`` for int64 ``keys``: positions ordered by (key,
    position), a total order, here by heapsort (small to compile, unlike Numba's mergesort)."""
    n = keys.size
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[i] = i
    half = n // 2
    for step in range(half + n - 1):
        if step < half:
            pos = half - 1 - step
            end = n
        else:
            end = n - 1 - (step - half)
            v = order[0]
            order[0] = order[end]
            order[end] = v
            pos = 0
        item = order[pos]
        while True:
            child = 2 * pos + 1
            if child >= end:
                break
            c = order[child]
            if child + 1 < end:
                r = order[child + 1]
                if keys[r] > keys[c] or (keys[r] == keys[c] and r > c):
                    child += 1
                    c = r
            if keys[c] > keys[item] or (keys[c] == keys[item] and c > item):
                order[pos] = c
                pos = child
            else:
                break
        order[pos] = item
    return order


@numba.njit(cache=True, error_model="numpy")
def kth_smallest(values, k):
    """The k-th smallest entry (0-based) of ``values``: ``np.partition(values, k)[k]``, by an
    iterative quickselect (median-of-three pivot, three-way partition, so runs of equal values
    cost one pass) on a scratch copy, with a sort of the remaining range as the fallback after
    2 log2(B) + 8 rounds (worst case O(B log B), typical O(B)). NaN-free input assumed (gains are
    finite or -inf)."""
    w = values.copy()
    lo = np.int64(0)  # not the literal 0 (an extra _heapsort_range specialisation)
    hi = w.size - 1
    rounds = 0
    limit = 2 * int(math.log2(max(w.size, 1))) + 8
    while lo < hi:
        if rounds >= limit:
            _heapsort_range(w, lo, hi)
            return w[k]
        rounds += 1
        mid = (lo + hi) // 2
        x, y, z = w[lo], w[mid], w[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        pivot = y
        # Dutch national flag: [lo, lt) < pivot, [lt, i) == pivot, (gt, hi] > pivot
        lt = lo
        gt = hi
        i = lo
        while i <= gt:
            v = w[i]
            if v < pivot:
                w[i] = w[lt]
                w[lt] = v
                lt += 1
                i += 1
            elif v > pivot:
                w[i] = w[gt]
                w[gt] = v
                gt -= 1
            else:
                i += 1
        if k < lt:
            hi = lt - 1
        elif k > gt:
            lo = gt + 1
        else:
            return pivot
    return w[k]


@numba.njit(cache=True, error_model="numpy")
def _one_each(code, a, lower, upper, start, x, remaining):
    """Give one unit to each of the ``remaining`` prompts with the largest gain (ties: fewer
    rollouts, then lower index), by O(B) selection, in place on ``x``.

    Returns (placed, exchange_optimal): placed is False if fewer prompts can take one; then the
    exchange certificate of :func:`certify_integer` is evaluated on the result, reusing the
    gains at the start point ``start`` (one new gain per prompt instead of two)."""
    size = x.size
    gain = np.empty(size, dtype=np.float64)
    for q in range(size):
        gain[q] = cost_gain(code, a[q], float(x[q])) if x[q] < upper[q] else -np.inf
    kth = size - remaining
    tau = kth_smallest(gain, kth)
    if tau == -np.inf:
        return False, False
    above = 0
    ties = 0
    for q in range(size):  # the prompts strictly above the threshold take their unit now
        if gain[q] > tau:
            x[q] += 1
            above += 1
        elif gain[q] == tau:
            ties += 1
    need = remaining - above
    if need == ties:  # the usual case (one prompt at the threshold): every tie takes a unit
        for q in range(size):
            if gain[q] == tau:
                x[q] += 1
    else:  # fewer units than ties: fewer rollouts first, then lower index (x of ties unchanged)
        tie_idx = np.empty(ties, dtype=np.int64)
        tie_x = np.empty(ties, dtype=np.int64)
        t = 0
        for q in range(size):
            if gain[q] == tau:
                tie_idx[t] = q
                tie_x[t] = x[q]
                t += 1
        order = _stable_argsort(tie_x)  # stable: equal counts keep index order
        for t in range(need):
            x[tie_idx[order[t]]] += 1
    return True, _exchange_ok_from(code, a, lower, upper, start, x, gain)


_NEEDS_GREEDY = -2  # path of _solve_integer(greedy=None) when the heap greedy must run


@numba.njit(cache=True, error_model="numpy")
def _solve_integer(code, a, lower, upper, budget, n_cont, greedy):
    """Exact integer optimum of VIP eq. (5) from the continuous optimum ``n_cont``.

    Start: y = floor(n_cont) (shaved by 1e-9 relative so that rounding noise can only lower it),
    clipped to [lower, upper]. Fast path: one extra unit to each of the C - sum(y) prompts with
    the largest gain f(y_q) - f(y_q + 1) (O(B) selection; ties: fewer rollouts, then lower index).
    The exchange certificate (necessary and sufficient for separable discretely convex costs) is
    checked; if it fails, a heap greedy by largest gain fills from y, and failing that from the
    lower bounds (greedy from the lower bounds is exact for these costs). A heap greedy that would
    place more than 2**26 units one at a time is not run (the failed certificate is returned).
    Returns (x, detail code, path) with path 0 = fast, 1 = heap from y, 2 = heap from lower.

    With ``greedy`` None (a specialisation that never compiles the heap greedy: Numba prunes the
    ``greedy is None`` branch before typing) a failed fast path returns path ``_NEEDS_GREEDY``
    instead; the caller then solves again with ``greedy`` True (the same result as one call).
    """
    size = a.size
    y = np.empty(size, dtype=np.int64)
    total = 0
    for q in range(size):
        v = math.floor(n_cont[q] - 1e-9 * max(1.0, abs(n_cont[q])))
        if v < lower[q]:
            v = lower[q]
        if v > upper[q]:
            v = upper[q]
        y[q] = np.int64(v)
        total += y[q]
    if total > budget:
        total = 0
        for q in range(size):
            y[q] = np.int64(lower[q])
            total += y[q]
    remaining = budget - total
    x = y.copy()
    if remaining == 0:
        detail, _ = certify_integer(code, a, lower, upper, budget, x)
        if detail == CERT_OK:
            return x, detail, 0
    elif remaining <= size:
        placed, optimal = _one_each(code, a, lower, upper, y, x, remaining)
        if placed and optimal:
            return x, CERT_OK, 0
    if greedy is None:
        return x, CERT_SUM, _NEEDS_GREEDY
    x = y.copy()
    if remaining > _MAX_GREEDY_UNITS:  # only when the continuous optimum's floors were unusable
        return x, CERT_SUM, 1
    greedy_fill(code, a, x, upper, remaining, False, True)
    detail, _ = certify_integer(code, a, lower, upper, budget, x)
    if detail == CERT_OK:
        return x, detail, 1
    total = 0
    for q in range(size):
        total += np.int64(lower[q])
    if budget - total > _MAX_GREEDY_UNITS:
        return x, detail, 1  # greedy from the bounds would take too long: report the failure
    for q in range(size):
        x[q] = np.int64(lower[q])
    greedy_fill(code, a, x, upper, budget - total, False, True)
    detail, _ = certify_integer(code, a, lower, upper, budget, x)
    return x, detail, 2


@numba.njit(cache=True, error_model="numpy")
def solve_integer(code, a, lower, upper, budget, n_cont):
    """:func:`_solve_integer` with the heap greedy fallback compiled in: (x, detail, path)."""
    return _solve_integer(code, a, lower, upper, budget, n_cont, True)


@numba.njit(cache=True, error_model="numpy")
def round_greedy_kernel(code, a, n_cont, upper, budget):
    """VIP Algorithm 2 (Appendix D) literally: floor, then give the remaining units one by one to
    argmax_q [f_q(n_q) - f_q(n_q + 1)] over prompts below U (first index on ties).
    Returns (x, units left unplaced)."""
    size = a.size
    x = np.empty(size, dtype=np.int64)
    total = 0
    for q in range(size):
        x[q] = np.int64(math.floor(n_cont[q]))
        total += x[q]
    left = greedy_fill(code, a, x, upper, budget - total, True, False)
    return x, left


@numba.njit(cache=True, error_model="numpy")
def allocate_continuous(code, a, lower, upper, budget, integer, check_inputs, drgrpo):
    """The continuous part of :func:`allocate_kernel` (all of it in continuous mode).

    Returns (n_continuous, price, lower_bound, detail, where, converged). A separate kernel from
    :func:`allocate_integer` so that a continuous call never compiles the integer machinery
    (heap greedy, selection, sorts) and a cold first call compiles much less. ``drgrpo`` is
    ``_drgrpo_flag(code)``: None compiles (and caches) a kernel without the drgrpo cubic.
    """
    if check_inputs and not inputs_ok(code, a, lower, upper, budget, integer):
        return np.empty(0, dtype=np.float64), 0.0, 0.0, CERT_INPUT, -1, False
    n_cont, price, converged = _solve_continuous(code, a, lower, upper, budget, drgrpo)
    lower_bound = objective(code, a, n_cont)
    detail, where = certify_continuous(code, a, lower, upper, budget, n_cont, price)
    return n_cont, price, lower_bound, detail, where, converged


@numba.njit(cache=True, error_model="numpy")
def allocate_integer(code, a, lower, upper, budget, n_cont, lower_bound, detail, greedy):
    """The integer part of :func:`allocate_kernel`, from the continuous optimum ``n_cont`` (its
    objective ``lower_bound`` and certificate ``detail``); ``budget`` is an int64.
    Returns (n_integer, objective, detail, path); ``greedy`` as in :func:`_solve_integer` (with
    None, path ``_NEEDS_GREEDY`` asks for a call with True)."""
    path = -1
    if detail == CERT_OK:
        x, detail, path = _solve_integer(code, a, lower, upper, budget, n_cont, greedy)
        if path == _NEEDS_GREEDY:
            return x, 0.0, detail, path
    else:
        x = np.empty(a.size, dtype=np.int64)
        for q in range(a.size):
            x[q] = np.int64(math.floor(n_cont[q]))
    value = 0.0
    for q in range(a.size):
        value += cost_value(code, a[q], float(x[q]))
    if detail == CERT_OK and value < lower_bound - 1e-9 * max(1.0, abs(lower_bound)):
        detail = CERT_EXCHANGE  # cannot beat the relaxation: something is inconsistent
    return x, value, detail, path


def allocate_kernel(code, a, lower, upper, budget, integer, check_inputs):
    """Everything :func:`solvers.allocate` computes after validation (plain Python glue around
    the two compiled kernels :func:`allocate_continuous` and :func:`allocate_integer`).

    Returns (n_continuous, n_integer, price, objective, lower_bound, detail, where, converged,
    path); ``n_integer`` is empty in continuous mode, ``path`` is solve_integer's path (-1 if none).
    With ``check_inputs``, ``detail == CERT_INPUT`` (nothing solved) means the input needs the
    wrapper's full validation, which raises the error with its message; the wrapper passes False
    after its own full validation (so 1-ulp differences between summation orders cannot bounce).
    """
    n_cont, price, lower_bound, detail, where, converged = allocate_continuous(
        code, a, lower, upper, budget, integer, check_inputs, _drgrpo_flag(code)
    )
    if detail == CERT_INPUT:
        return n_cont, np.empty(0, dtype=np.int64), 0.0, 0.0, 0.0, CERT_INPUT, -1, False, -1
    if not integer:
        return n_cont, np.empty(0, dtype=np.int64), price, lower_bound, lower_bound, detail, where, converged, -1
    budget_i = int(budget)
    x, value, detail_i, path = allocate_integer(code, a, lower, upper, budget_i, n_cont, lower_bound, detail, None)
    if path == _NEEDS_GREEDY:  # rare: the fast path failed; compile and run the greedy fallback
        x, value, detail_i, path = allocate_integer(code, a, lower, upper, budget_i, n_cont, lower_bound, detail, True)
    detail = detail_i
    if path != -1:
        where = -1
    return n_cont, x, price, value, lower_bound, detail, where, converged, path
