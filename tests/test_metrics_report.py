import numpy as np
import pytest

from fit3dmm.metrics import markdown_table


def test_markdown_table_formats_cells():
    rows = [
        {"method": "prdl", "nme": 0.123456, "n": 3, "ok": True},
        {"method": "a|b", "nme": float("nan"), "extra": "ignored"},
        {"method": "np", "nme": np.float32(2.5), "n": np.int64(7), "ok": None},
    ]
    expected = (
        "| method | nme | n | ok |\n"
        "| --- | --- | --- | --- |\n"
        "| prdl | 0.123 | 3 | True |\n"
        "| a\\|b | nan |  |  |\n"
        "| np | 2.500 | 7 |  |"
    )
    assert markdown_table(rows, ["method", "nme", "n", "ok"]) == expected


def test_markdown_table_floatfmt_and_column_order():
    table = markdown_table([{"a": 1.25, "b": 1e-4}], ["b", "a"], floatfmt=".1e")
    assert table.splitlines() == ["| b | a |", "| --- | --- |", "| 1.0e-04 | 1.2e+00 |"]


def test_markdown_table_header_only_without_rows():
    assert markdown_table([], ["x"]) == "| x |\n| --- |"


def test_markdown_table_rejects_unknown_or_no_columns():
    with pytest.raises(ValueError, match="nmee"):
        markdown_table([{"nme": 1.0}], ["nme", "nmee"])
    with pytest.raises(ValueError, match="at least one column"):
        markdown_table([{"nme": 1.0}], [])
