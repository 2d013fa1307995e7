"""interop_helpers.calls: grad modes, export of results (nested too) and loading files, as both sessions use them."""
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop_helpers import calls, torch_export  # noqa: E402


def grad_state():
    return (torch.is_grad_enabled(), torch.is_inference_mode_enabled())


@pytest.mark.parametrize("mode, expected", [(calls.GRAD_DEFAULT, (True, False)), (calls.NO_GRAD, (False, False)),
                                            (calls.INFERENCE_MODE, (False, True))])
def test_grad_modes(mode, expected):
    assert calls.call(grad_state, grad_mode=mode) == expected
    assert torch.is_grad_enabled()


def test_unknown_grad_mode_is_a_value_error():
    with pytest.raises(ValueError, match="grad mode"):
        calls.call(grad_state, grad_mode=7)


def test_args_and_kwargs_are_passed():
    assert calls.call(lambda a, b=0: a - b, (10,), {"b": 3}) == 7


def test_tensors_are_exported_inside_lists_tuples_and_dicts():
    t = torch.arange(3, dtype=torch.float32)
    result = calls.call(lambda: {"x": [t, (t * 2, 5)], "s": "keep"})
    assert isinstance(result["x"][0], np.ndarray)
    assert result["x"][0].__array_interface__["data"][0] == t.data_ptr(), "a CPU tensor is exported without a copy"
    np.testing.assert_array_equal(result["x"][1][0], [0, 2, 4])
    assert result["x"][1][1] == 5 and result["s"] == "keep"


def test_export_options_reach_the_policy():
    bf16 = torch.ones(2, dtype=torch.bfloat16)
    with pytest.raises(torch_export.UnsupportedDTypeError):
        calls.call(lambda: [bf16])
    assert calls.call(lambda: [bf16], upcast=True)[0].dtype == np.float32
    needs_grad = torch.ones(2, requires_grad=True)
    with pytest.raises(torch_export.RequiresGradError):
        calls.call(lambda: needs_grad, detach=False)


def test_export_false_returns_the_raw_result_of_a_default_grad_call_and_other_modes_still_export():
    t = torch.arange(3, dtype=torch.float32)
    assert calls.call(lambda: t, export=False) is t, "the in-process session exports it itself"
    assert isinstance(calls.call(lambda: t), np.ndarray), "the default is unchanged (the worker relies on it)"
    assert isinstance(calls.call(lambda: t, grad_mode=calls.NO_GRAD, export=False), np.ndarray), "only the default mode skips the export"


def test_numpy_scalars_become_python_scalars_and_big_endian_arrays_native():
    assert type(calls.export_tree(np.float32(1.5))) is float
    # np.float64 subclasses float: it must not take the plain-value shortcut, or .NET would receive a NumPy scalar
    assert type(calls.export_tree(np.float64(2.5))) is float and type(calls.export_tree(np.bool_(True))) is bool
    a = calls.export_tree(np.arange(3, dtype=">i4"))
    assert a.dtype.isnative and a.tolist() == [0, 1, 2]


def test_namedtuples_come_back_as_tuples():
    from collections import namedtuple

    Point = namedtuple("Point", "x y")
    assert calls.export_tree(Point(1, 2)) == (1, 2)


def test_load_file_reuses_the_module_of_a_path_and_reruns_it_only_when_the_file_changed(tmp_path):
    path = tmp_path / "counter_a.py"
    path.write_text("value = []\n")
    before = len(sys.modules)
    a = calls.load_file(str(path))
    b = calls.load_file(str(path))
    assert a is b and a.__name__ == "counter_a" and sys.modules["counter_a"] is a
    for _ in range(20):
        calls.load_file(str(path))
    assert len(sys.modules) == before + 1, "repeated loads do not accumulate modules"
    path.write_text("value = [1, 2]\n")
    c = calls.load_file(str(path))
    assert c is not a and c.value == [1, 2] and sys.modules["counter_a"] is c
    assert len(sys.modules) == before + 1


def test_load_file_makes_the_folder_importable_and_names_the_module_after_the_file(tmp_path):
    (tmp_path / "sibling_helpers_b.py").write_text("def twice(x):\n    return 2 * x\n")
    model = tmp_path / "model_b.py"
    model.write_text("import sibling_helpers_b\ndef f(x):\n    return sibling_helpers_b.twice(x)\ndef fail():\n    raise ValueError('here')\n")
    module = calls.load_file(str(model))
    assert module.f(21) == 42
    assert module.__name__ == "model_b"
    with pytest.raises(ValueError) as info:
        module.fail()
    assert info.value.__traceback__.tb_next.tb_frame.f_globals["__name__"] == "model_b"


def test_load_file_of_a_name_taken_by_another_module_gets_a_distinct_name(tmp_path):
    path = tmp_path / "json.py"
    path.write_text("mine = True\n")
    module = calls.load_file(str(path))
    assert module.mine and module.__name__.startswith("json_") and sys.modules["json"] is not module


def test_load_file_runs_a_script_without_the_py_suffix(tmp_path):
    path = tmp_path / "model"
    path.write_text("def f():\n    return 42\n")
    assert calls.load_file(str(path)).f() == 42


def test_load_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        calls.load_file(str(tmp_path / "missing.py"))
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('at import')\n")
    before = set(sys.modules)
    with pytest.raises(RuntimeError, match="at import"):
        calls.load_file(str(bad))
    assert set(sys.modules) == before, "a failed load leaves no module behind"


def test_from_numpy_copy_copies_and_accepts_what_from_numpy_refuses():
    a = np.arange(6.0)[::-1]
    with pytest.raises(ValueError, match="negative"):
        torch.from_numpy(a)
    t = torch_export.from_numpy_copy(a)
    assert t.is_contiguous() and t.tolist() == a.tolist()
    assert t.data_ptr() != a.__array_interface__["data"][0]
    big = np.arange(3, dtype=">f8")
    assert torch_export.from_numpy_copy(big).tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(TypeError):
        torch_export.from_numpy_copy([1, 2])


# ---- the conversion limits (ConversionLimits.cs holds the same numbers) ---------------------------------------


def nested(levels):
    value = 1
    for _ in range(levels):
        value = [value]
    return value


def test_results_nested_up_to_the_limit_are_exported_and_deeper_ones_are_a_value_error():
    assert calls.export_tree(nested(calls.MAX_DEPTH)) == nested(calls.MAX_DEPTH)
    with pytest.raises(ValueError, match="nested deeper than %d" % calls.MAX_DEPTH):
        calls.export_tree(nested(calls.MAX_DEPTH + 1))


def test_a_self_referencing_result_is_a_value_error_not_a_recursion_error():
    a = []
    a.append(a)
    with pytest.raises(ValueError, match="contains itself"):
        calls.export_tree(a)
    d = {}
    d["d"] = d
    with pytest.raises(ValueError, match="contains itself"):
        calls.export_tree(d)


def test_result_strings_and_keys_with_unpaired_surrogates_are_a_value_error():
    with pytest.raises(ValueError, match="surrogates"):
        calls.export_tree(["fine", "\ud800x"])
    with pytest.raises(ValueError, match="surrogates"):
        calls.export_tree({"\udcff": 1})
    assert calls.export_tree("a\U0001F600") == "a\U0001F600"


def test_result_arrays_above_the_rank_limit_are_a_value_error():
    assert calls.export_tree(np.zeros((1,) * calls.MAX_RANK)).ndim == calls.MAX_RANK
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip("NumPy 1.x cannot make an array of more than 32 dimensions")
    with pytest.raises(ValueError, match="%d dimensions" % (calls.MAX_RANK + 1)):
        calls.export_tree([np.zeros((1,) * (calls.MAX_RANK + 1))])


def test_plain_results_come_back_as_the_same_objects_in_every_grad_mode():
    for value in (None, True, 7, 2**70, 1.5, 1j, b"raw"):
        for mode in (calls.GRAD_DEFAULT, calls.NO_GRAD, calls.INFERENCE_MODE):
            assert calls.call(lambda v=value: v, grad_mode=mode) is value


def test_kwargs_none_and_empty_call_without_keywords():
    assert calls.call(lambda *a: a, (1, 2)) == (1, 2)
    assert calls.call(lambda *a: a, (1, 2), {}) == (1, 2)
    assert calls.call(lambda *a, **k: (a, k), (1,), {"x": 2}, calls.NO_GRAD) == ((1,), {"x": 2})
