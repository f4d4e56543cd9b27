"""User kernels: the generated kernel source (the engine's batched loop around the user's function)."""

from __future__ import annotations

import textwrap

from featurestore.indicators.user.declare import _Size


def _sub(template: str, **subs: str) -> str:
    """Fill ``{KEY}`` markers: a line holding only a marker takes the (multi-line) text at that
    line's indentation; other occurrences are replaced inline (single-line texts)."""
    out: list[str] = []
    for line in textwrap.dedent(template).strip("\n").splitlines():
        key = line.strip()
        if key.startswith("{") and key.endswith("}") and key[1:-1] in subs:
            pad = line[: len(line) - len(line.lstrip())]
            out.extend(pad + t for t in subs[key[1:-1]].splitlines() if t.strip())
            continue
        for k, v in subs.items():
            line = line.replace("{" + k + "}", v)
        out.append(line)
    return "\n".join(out) + "\n"


_HEAD = """
def _run({ARGS}):
    {SIZES}
    n = I0.size
    if {LENGTHS}:
        return BAD_INPUT_LENGTHS
    bad = _check(offsets, n, state_in, state, width)
    if bad != 0:
        return bad
    copy = state_in.ctypes.data != state.ctypes.data
    {PRE}
    for k in range(offsets.size - 1):
        _copy_row(state_in, state, k, copy)
        start = offsets[k]
        end = offsets[k + 1]
        c0 = np.int64(state[k, 0])
        i = start
        if c0 == 0:
            while i < end and ({ANYNAN}):
                {NAN_OUT}
                i += 1
        if i >= end:
            continue
        p = i
        {BODY}
    return 0
"""

_WINDOWED = """
a_end = p + m
if a_end > end:
    a_end = end
while i < a_end:
    g = c0 + (i - p)
    if g < m:
        {NAN_OUT}
    else:
        lo = g - m
        for t in range(W):
            gg = lo + t
            if gg < c0:
                s = 1 + gg % m
                {FILL_RING}
            else:
                jj = p + (gg - c0)
                {FILL_IN}
        r = _FN({TMPS}{PS})
        {STORE}
        {CHECK_RING}
    i += 1
while i < end:
    a = i - m
    r = _FN({SLICES}{PS})
    {STORE}
    {CHECK_IN}
    i += 1
if m > 0:
    j0 = end - m
    if j0 < p:
        j0 = p
    for j in range(j0, end):
        s = 1 + (c0 + j - p) % m
        {SAVE}
state[k, 0] = c0 + (end - p)
"""

# Phase 1 (the first m bars of a call: the window reaches into the saved ring, copied into T*).
_WINDOW_CHECK_RING = """
bad_o = -1
{WHICH}
if bad_o >= 0:
    ok = True
    for t in range(W):
        gg = lo + t
        if gg < c0:
            s = 1 + gg % m
            if not ({RING_FINITE}):
                ok = False
                break
        else:
            jj = p + (gg - c0)
            if not ({IN_FINITE}):
                ok = False
                break
    if ok:
        return NAN_CODE + i * 64 + bad_o
"""

# Phase 2 (the window lies in this call's inputs: the function gets views of them, no copy;
# ``_view`` builds the view without the bounds normalisation of a slice, which the loop's
# indices make redundant).
_WINDOW_CHECK_IN = """
bad_o = -1
{WHICH}
if bad_o >= 0:
    ok = True
    for jj in range(a, i + 1):
        if not ({IN_FINITE}):
            ok = False
            break
    if ok:
        return NAN_CODE + i * 64 + bad_o
"""

_RECURSIVE = """
c = c0
taint = state[k, 1] != 0.0
u = state[k, 2:]
{INIT}
while i < end:
    if not ({FINITE}):
        taint = True
    r = _FN(u, c, {XS}{PS})
    if c < lb:
        {NAN_OUT}
    else:
        {STORE}
        {CHECK}
    c += 1
    i += 1
state[k, 0] = c
state[k, 1] = 1.0 if taint else 0.0
"""


def _kernel_source(
    form: str, n_in: int, n_p: int, n_out: int, sizes: dict[str, _Size], allow_nan: bool, has_init: bool
) -> str:
    """The Python source of the kernel (standard calling convention) for one declaration."""
    ins = [f"I{j}" for j in range(n_in)]
    outs = [f"O{j}" for j in range(n_out)]
    pars = [f"P{j}" for j in range(n_p)]
    ps = "".join(", " + q for q in pars)

    def size(name: str) -> str:
        s = sizes[name]
        return s.nb_src or f"_{name.upper()}({', '.join(pars)})"

    nan_out = "\n".join(f"{o}[i] = np.nan" for o in outs)
    # _out accepts an int or float only and unpacking checks the tuple's length, so a function of
    # the wrong arity fails to compile here (registration then asks the function for the reason).
    store = "O0[i] = _out(r)" if n_out == 1 else "\n".join(
        [", ".join(f"r{j}" for j in range(n_out)) + " = r", *(f"{o}[i] = _out(r{j})" for j, o in enumerate(outs))]
    )
    if form == "windowed":
        sizes_src = f"W = {size('window')}\nm = W - 1\nwidth = 1 + {n_in} * m"
        pre = "\n".join(f"T{j} = np.empty(W)" for j in range(n_in))
        which = "\n".join(
            ("if" if j == 0 else "elif") + f" not math.isfinite({o}[i]):\n    bad_o = {j}" for j, o in enumerate(outs)
        )
        in_finite = " and ".join(f"math.isfinite(I{j}[jj])" for j in range(n_in))
        check_ring = "" if allow_nan else _sub(
            _WINDOW_CHECK_RING, WHICH=which, IN_FINITE=in_finite,
            RING_FINITE=" and ".join(f"math.isfinite(state[k, s + {j} * m])" for j in range(n_in)),
        )
        check_in = "" if allow_nan else _sub(_WINDOW_CHECK_IN, WHICH=which, IN_FINITE=in_finite)
        body = _sub(
            _WINDOWED, NAN_OUT=nan_out, STORE=store, CHECK_RING=check_ring, CHECK_IN=check_in, PS=ps,
            SLICES=", ".join(f"_view({x}, a, W)" for x in ins),
            TMPS=", ".join(f"T{j}" for j in range(n_in)),
            FILL_RING="\n".join(f"T{j}[t] = state[k, s + {j} * m]" for j in range(n_in)),
            FILL_IN="\n".join(f"T{j}[t] = I{j}[jj]" for j in range(n_in)),
            SAVE="\n".join(f"state[k, s + {j} * m] = I{j}[j]" for j in range(n_in)),
        )
    else:
        sizes_src = f"wid = {size('state')}\nlb = {size('lookback')}\nwidth = 2 + wid"
        pre = ""
        check = "" if allow_nan else "\n".join(
            f"if not taint and not math.isfinite({o}[i]):\n    return NAN_CODE + i * 64 + {j}" for j, o in enumerate(outs)
        )
        body = _sub(
            _RECURSIVE, NAN_OUT=nan_out, STORE=store, CHECK=check, PS=ps,
            INIT=f"if c0 == 0:\n    _INIT(u{ps})" if has_init else "",
            FINITE=" and ".join(f"math.isfinite({x}[i])" for x in ins),
            XS=", ".join(f"{x}[i]" for x in ins),
        )
    return _sub(
        _HEAD, ARGS=", ".join([*ins, "offsets", *pars, "state_in", "state", *outs]), SIZES=sizes_src,
        LENGTHS=" or ".join(f"{x}.size != n" for x in ins[1:]) or "False", PRE=pre,
        ANYNAN=" or ".join(f"math.isnan({x}[i])" for x in ins), NAN_OUT=nan_out, BODY=body,
    )


