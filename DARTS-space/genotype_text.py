"""DARTS-space genotypes as text: the `Genotype(...)` form the authors' logs print and their
genotypes.py holds, read as data and written back; and every genotype genotypes.py defines.

    genotype_text(genotype) -> "Genotype(normal=[('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5], ...)"
    genotype_from_text(text) -> Genotype     # the same form; `range(2, 6)` for a concat too
    named_genotypes() -> {name: Genotype}    # every Genotype bound to a name in genotypes.py

The text is parsed with `ast` and only literals (and `range` of whole numbers) are taken:
nothing in it is executed. A text that is not a genotype raises ValueError.
"""
import ast

from darts_space import genotypes
from darts_space.genotypes import Genotype, genotype_from_json, genotype_to_json

MAX_TEXT = 20_000  # a genotype of many nodes is a few kB; anything longer is not one


def genotype_text(genotype):
    """The `Genotype(...)` text of a Genotype or of its JSON dict (what genotypes.py holds)."""
    data = genotype_to_json(genotype_from_json(genotype))
    pairs = {cell: [tuple(pair) for pair in data[cell]] for cell in ("normal", "reduce")}
    return repr(Genotype(normal=pairs["normal"], normal_concat=data["normal_concat"],
                         reduce=pairs["reduce"], reduce_concat=data["reduce_concat"]))


def _literal(node):
    """A literal, or a `range(...)` of whole-number literals as a list."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        bounds = [ast.literal_eval(arg) for arg in node.args]
        if node.keywords or not 1 <= len(bounds) <= 3 or not all(type(b) is int for b in bounds):
            raise ValueError("range(...) takes one to three whole numbers")
        return list(range(*bounds))
    return ast.literal_eval(node)


def genotype_from_text(text):
    """The Genotype of `Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)`
    (keywords or positional fields), checked as genotype_from_json checks a JSON genotype."""
    text = str(text).strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"{len(text)} characters is too long for a genotype")
    try:
        call = ast.parse(text, mode="eval").body
    except (SyntaxError, RecursionError, MemoryError) as err:
        raise ValueError(f"not Python text of a Genotype(...) ({type(err).__name__})") from None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise ValueError("expected Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])")
    if len(call.args) > len(Genotype._fields) or any(k.arg not in Genotype._fields for k in call.keywords):
        raise ValueError(f"a Genotype has the fields {', '.join(Genotype._fields)}")
    nodes = {**dict(zip(Genotype._fields, call.args)), **{k.arg: k.value for k in call.keywords}}
    fields = {}
    for name, node in nodes.items():
        try:
            fields[name] = _literal(node)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            raise ValueError(f"{name} is not a literal (only lists, tuples, strings, numbers and range(...) are "
                             "read; nothing is run)") from None
    return genotype_from_json(fields)


def named_genotypes():
    """{name: Genotype} of every genotype bound to a name in genotypes.py, those added there
    by a user included (as the authors' `eval("genotypes.%s" % args.arch)` found them)."""
    return {name: value for name, value in vars(genotypes).items()
            if isinstance(value, Genotype) and not name.startswith("_")}
