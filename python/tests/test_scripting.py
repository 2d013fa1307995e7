"""interop_helpers.calls' scripting entry points (exec/eval, attributes, output routing) and the protocol's bytes and
"array" values, as both session kinds use them."""
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop_helpers import calls, protocol  # noqa: E402
from interop_helpers.protocol import ProtocolError  # noqa: E402


def test_exec_source_returns_what_the_script_bound_without_inputs_modules_or_dunders():
    given = {"xs": [1, 2, 3], "n": 1}
    result = calls.exec_source("import math\ntotal = sum(xs) * 2\nn = n + 1\n__hidden = 1\ndef f():\n    return 1\n", given)
    assert set(result) == {"total", "n", "f"}
    assert result["total"] == 12 and result["n"] == 2 and result["f"]() == 1


def test_exec_source_runs_as_main_and_reports_the_line():
    assert calls.exec_source("name = __name__")["name"] == "__main__"
    with pytest.raises(ZeroDivisionError) as info:
        calls.exec_source("a = 1\nb = a / 0\n")
    assert info.traceback[-1].lineno == 1  # 0-based: the second line of <script>


def test_exec_file_names_the_file(tmp_path):
    script = tmp_path / "analysis.py"
    script.write_text("here = __file__\nvalue = x + 1\n")
    result = calls.exec_file(script, {"x": 1})
    assert result == {"here": str(script.resolve()), "value": 2}
    with pytest.raises(FileNotFoundError):
        calls.exec_file(tmp_path / "missing.py")


def test_eval_source_and_attributes():
    assert calls.eval_source(" a * b \n", {"a": 6, "b": 7}) == 42
    with pytest.raises(SyntaxError):
        calls.eval_source("x = 1")

    class Thing:
        training = True

    thing = Thing()
    calls.set_attr(thing, "training", False)
    assert calls.get_attr(thing, "training") is False


def test_the_interrupt_is_not_an_exception_so_except_exception_does_not_swallow_it():
    assert issubclass(calls.Interrupted, BaseException) and not issubclass(calls.Interrupted, Exception)


def test_call_with_output_routes_this_threads_output_to_the_sink(monkeypatch):
    console = io.StringIO()
    monkeypatch.setattr(sys, "stdout", console)
    monkeypatch.setattr(sys, "stderr", console)
    seen = []
    assert calls.call_with_output(seen.append, lambda: print("hi") or print("err", file=sys.stderr) or 5) == 5
    assert "".join(seen) == "hi\nerr\n"
    print("after")
    assert console.getvalue() == "after\n", "without a sink, output reaches the stream the route replaced"


def test_bytes_and_array_values_are_validated():
    assert protocol.check_value({"t": "bytes", "v": "AAE="}) == {"t": "bytes", "v": b"\x00\x01"}
    with pytest.raises(ProtocolError):
        protocol.check_value({"t": "bytes", "v": "not base64!"})
    checked = protocol.check_value({"t": "array", "dtype": "float32", "shape": [2], "offset": 0, "region": 1})
    assert checked["t"] == "array"
