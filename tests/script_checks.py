"""Checks the end-to-end tests of the scripts share."""
import json
from pathlib import Path

import pytest


def results(out_dir):
    """A run folder's results.json."""
    return json.loads((Path(out_dir) / "results.json").read_text())


def expect_one_line_error(capsys, main, argv):
    """`main(argv)` must exit 2 with one `error: ...` line on stderr and no traceback; returns it."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert "Traceback" not in err
    return err
