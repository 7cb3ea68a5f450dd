"""console: what the command line shows -- help in the user's words, strict JSON summaries,
and the command line as the outputs' history records it."""

from __future__ import annotations

import json
import shlex
from enum import Enum
from typing import Any


def plain_metavars(command: Any) -> None:
    """Help in the user's words: options show N, X, PATH, TEXT or their choices instead of
    Typer's Python types (<int range>, <list[str]>), and flags show nothing."""
    words = {"int": "N", "float": "X", "path": "PATH", "str": "TEXT", "bool": ""}
    plain_help = command.get_help_option

    def help_option(ctx: Any) -> Any:
        opt = plain_help(ctx)
        if opt is not None and opt.metavar is None:
            opt.metavar = ""
        return opt
    command.get_help_option = help_option
    for p in command.params:
        if p.metavar is not None or getattr(p, "param_type_name", "") != "option":
            continue
        try:
            shown = p.display_type(None).strip("<>")
        except Exception:  # pragma: no cover - a Typer without display_type keeps its own
            return
        shown = shown.removeprefix("list[").removesuffix("]").removesuffix(" range")
        p.metavar = "" if getattr(p, "is_flag", False) else words.get(shown, shown)


def strict_json(obj: Any) -> str:
    """JSON that strict parsers (jq) read: NaN and infinities as null, other types as text."""
    def clean(o: Any) -> Any:
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if o is None or isinstance(o, (str, bool, int)):
            return o
        if hasattr(o, "__index__"):  # numpy integers
            return int(o)
        if isinstance(o, float) or hasattr(o, "__float__"):
            f = float(o)
            return f if f == f and abs(f) != float("inf") else None
        return str(o)
    return json.dumps(clean(obj), indent=2, allow_nan=False)


def command_line(ctx: Any) -> str:
    """The running command (a click/Typer context) as a shell line, rebuilt from its parsed
    parameters (so it is right however the app was invoked): arguments, then options that
    differ from their defaults; an on/off flag turned off is written with its off name
    (--no-blend, --no-calibrate)."""
    parts = ["impute-cli", ctx.info_name or ""]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        v = v.value if isinstance(v, Enum) else v
        if getattr(p, "param_type_name", "") == "argument":
            parts.append(str(v))
        elif getattr(p, "is_flag", False):
            names = p.opts if v else getattr(p, "secondary_opts", [])
            if v is not None and v != p.default and names:
                parts.append(names[0])
        elif v not in (None, p.default) and v != [] and p.opts:
            for item in v if isinstance(v, (list, tuple)) else [v]:
                parts += [p.opts[0], str(item.value if isinstance(item, Enum) else item)]
    return shlex.join(parts)
