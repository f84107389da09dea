"""What a report may read of a results.json, by field and type: a run whose file was edited by
hand (a string where a number belongs, a list where an object belongs) is told apart before
aggregate.py or plot_search.py reads it, and skipped with one line naming the file and field.

A field that is absent or null is always allowed (runs of older versions lack some); a field
the schema does not name is not read, so it is not checked.
"""


class Fields(dict):
    """A JSON object whose named fields, where present, have these specs."""


class ListOf:
    def __init__(self, item):
        self.item = item


class MapOf:
    """A JSON object whose every value has this spec (keys are free: metrics, cell types)."""

    def __init__(self, value):
        self.value = value


class Matrix:
    """A list of rows of numbers (edges x ops), every row as long as the first, no null inside."""


NUMBER = "number"
GENOTYPE = (str, dict, list)  # a NAS-Bench-201 string; a DARTS-space object; older lists
MATRIX = Matrix()

ARGS = Fields(method=str, dataset=str, k=int, reg_type=str, reg_scale=NUMBER, seed=int, hessian_freq=int,
              sample_archs=int, arch=str, epochs=int, batch_size=int, learning_rate=NUMBER, save=str)
EXPLORATION = Fields(samples=int, distinct=NUMBER, benchmark=MapOf(Fields(min=NUMBER, mean=NUMBER, max=NUMBER)))
EPOCH = Fields(epoch=int, stage=int, k=int, tau=NUMBER, lr=NUMBER, train_loss=NUMBER, train_acc=NUMBER,
               valid_loss=NUMBER, valid_acc=NUMBER, test_loss=NUMBER, test_acc=NUMBER, images_per_s=NUMBER,
               epoch_time_s=NUMBER, genotype=GENOTYPE, arch=MapOf(Fields(alpha=MATRIX, mean=MATRIX)),
               benchmark=MapOf(NUMBER), exploration=EXPLORATION, hessian_eigenvalue=NUMBER, memory_mb=MapOf(NUMBER))
RESULTS = Fields(
    args=ARGS, epochs=ListOf(EPOCH), stages=ListOf(Fields(epochs=int, k=int, num_keep=int, arch_start=int)),
    finished=bool, space=str, op_names=ListOf(str), edge_labels=MapOf(ListOf(str)), genotype=GENOTYPE,
    genotype_text=str, benchmark=MapOf(NUMBER), benchmark_source=Fields(standin=bool), params_m=NUMBER,
    final_test_acc=NUMBER, best_test_acc=NUMBER, wall_time_s=NUMBER, peak_memory_mb=NUMBER, processes=int,
    epochs_done=int, versions=MapOf((str, int, float)), memory_mb_by_stage=ListOf(MapOf(NUMBER)))

_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object",
               list: "a list", type(None): "null"}


def _json_name(value):
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _expected(spec):
    if spec == NUMBER:
        return "a number"
    if isinstance(spec, (Fields, MapOf)):
        return "an object"
    if isinstance(spec, ListOf):
        return "a list"
    if isinstance(spec, tuple):
        return " or ".join(_JSON_NAMES[t] for t in spec)
    return _JSON_NAMES[spec]


def _matches(value, spec):
    if spec == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)  # NaN, inf: a diverged run
    if isinstance(spec, (Fields, MapOf)):
        return isinstance(value, dict)
    if isinstance(spec, ListOf):
        return isinstance(value, list)
    kinds = spec if isinstance(spec, tuple) else (spec,)
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


def _matrix_error(value, path):
    """Where `value` is not a list of equally long rows of numbers, or None."""
    if not isinstance(value, list) or not value:
        return f"{path} is {'an empty list' if value == [] else _json_name(value)}, not a list of rows of numbers"
    for i, row in enumerate(value):
        if not isinstance(row, list):
            return f"{path}[{i}] is {_json_name(row)}, not a list of numbers"
        if not row:
            return f"{path}[{i}] is an empty list, not a list of numbers"
        if len(row) != len(value[0]):
            return f"{path}[{i}] has {len(row)} values, row 0 has {len(value[0])}"
        for j, item in enumerate(row):
            if not _matches(item, NUMBER):
                return f"{path}[{i}][{j}] is {_json_name(item)}, not a number"
    return None


def first_error(value, spec=RESULTS, path=""):
    """'FIELD is X, not Y' for the first field of `value` that breaks `spec`, or None."""
    if value is None:
        return None
    if isinstance(spec, Matrix):
        return _matrix_error(value, path)
    if not _matches(value, spec):
        return f"{path or 'the file'} is {_json_name(value)}, not {_expected(spec)}"
    if isinstance(spec, Fields):
        children = ((f"{path}.{key}" if path else key, value.get(key), sub) for key, sub in spec.items())
    elif isinstance(spec, MapOf):
        children = ((f"{path}.{key}", item, spec.value) for key, item in value.items())
    elif isinstance(spec, ListOf):
        children = ((f"{path}[{index}]", item, spec.item) for index, item in enumerate(value))
    else:
        return None
    for child_path, child, child_spec in children:
        error = first_error(child, child_spec, child_path)
        if error:
            return error
    return None
