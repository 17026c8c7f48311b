"""peftbench.tables: DataFrames rendered by tabulate as markdown and as plain text."""

import pandas as pd

from peftbench import tables


def frame():
    return pd.DataFrame([{"method": "lora", "value": "0.10", "note": None},
                         {"method": "hora|x", "value": "12", "note": float("nan")}])


def test_markdown_is_compact_escapes_bars_and_shows_missing_values_as_a_dash():
    assert tables.markdown(frame()).splitlines() == [
        "| method | value | note |",
        "|---|---|---|",
        "| lora | 0.10 | - |",  # strings stay as given: no number re-parsing ("0.10", not "0.1")
        "| hora\\|x | 12 | - |",  # a bar inside a cell is no column break
    ]


def test_aligned_markdown_pads_every_column_and_text_has_no_bars():
    aligned = tables.markdown(frame(), aligned=True).splitlines()
    assert len({len(line) for line in aligned}) == 1 and aligned[0].startswith("| method ")
    text = tables.text(frame()).splitlines()
    assert text[0].split() == ["method", "value", "note"] and set(text[1]) <= {"-", " "}
    assert text[2].split() == ["lora", "0.10", "-"] and "|" not in text[2]


def test_the_index_is_shown_only_when_asked():
    df = frame().set_index("method")
    assert tables.markdown(df).splitlines()[0] == "| value | note |"
    assert tables.markdown(df, index=True).splitlines()[0] == "| method | value | note |"
