"""Tests for hybridsched.workloads: shipped traces, file formats, options, export, CLI errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hybridsched.cli import main
from hybridsched.workloads.catalogue import (
    WORKLOADS,
    attribution,
    describe_workloads,
    export_workload,
    load_workload,
    parse_window,
    workload_info,
)
from hybridsched.workloads.formats import FORMATS, detect_format, read_requests_file
from hybridsched.workloads.requests import COLUMNS, load_gsm8k
from hybridsched.workloads.tables import requests_for


@pytest.fixture(scope="module")
def conv() -> pd.DataFrame:
    return load_workload("azure-conv")


# --------------------------------------------------------------------------------------
# Shipped workloads: the counts, spans and means data/PROVENANCE.md documents
# --------------------------------------------------------------------------------------

SHIPPED = [
    # name, requests, span (s) within 1 s, prompt mean, output mean, max prompt
    ("azure-code", 8819, 3435.9, 2047.8, 27.9, 7437),
    ("azure-conv", 19366, 3501.7, 1154.7, 211.1, 14050),
    ("mooncake-conv", 12031, 3537.0, 12035.1, 342.6, 126195),
]


@pytest.mark.parametrize(("name", "n", "span", "s_mean", "o_mean", "s_max"), SHIPPED)
def test_shipped_trace_counts_rates_and_means(name, n, span, s_mean, o_mean, s_max):
    """Tests that each shipped trace loads in the canonical schema with its documented
    count, span (so rate), mean lengths and max prompt, arrivals from 0 and in order."""
    df = load_workload(name)
    assert list(df.columns)[: len(COLUMNS)] == COLUMNS
    assert set(df.columns[len(COLUMNS) :]) == (
        {"prefix_blocks"} if name.startswith("mooncake") else set()
    )
    assert len(df) == n
    assert df["arrival_s"].iloc[0] == 0.0
    assert np.all(np.diff(df["arrival_s"].to_numpy()) >= 0)
    assert df["arrival_s"].max() == pytest.approx(span, abs=1.0)
    assert df["prompt_tokens"].mean() == pytest.approx(s_mean, abs=0.1)
    assert df["output_tokens"].mean() == pytest.approx(o_mean, abs=0.1)
    assert df["prompt_tokens"].max() == s_max
    assert df["request_id"].tolist() == list(range(n))  # 0-based rows of the source file
    info = workload_info(df)
    assert info["workload"] == name and info["num_selected"] == n and info["num_dropped"] == 0


def test_azure_rates_match_provenance(conv):
    """Tests the documented rates: about 2.6 req/s (code) and 5.5 req/s (conversation)."""
    code = load_workload("azure-code")
    assert len(code) / code["arrival_s"].max() == pytest.approx(2.57, abs=0.01)
    assert len(conv) / conv["arrival_s"].max() == pytest.approx(5.53, abs=0.01)


def test_azure_first_gaps_from_timestamps(conv):
    """Tests that Azure datetimes become seconds since the first request: the second
    conversation request (18:15:50.9951690) is 4.3145790 s after the first (18:15:46.6805900)."""
    assert conv["arrival_s"].iloc[1] == pytest.approx(4.314579, abs=1e-9)
    assert conv["prompt_tokens"].iloc[:2].tolist() == [374, 396]
    assert conv["output_tokens"].iloc[:2].tolist() == [44, 109]


def test_gsm8k_name_is_the_paper_workload():
    """Tests that `gsm8k` is the GSM8K test split, all at 0, identical to load_gsm8k, and
    that an arrival process gives it seeded arrivals without touching the lengths."""
    g = load_workload("gsm8k")
    pd.testing.assert_frame_equal(g, load_gsm8k())
    p = load_workload("gsm8k", arrivals="poisson:10", seed=3)
    assert p["arrival_s"].iloc[0] > 0 and np.all(np.diff(p["arrival_s"]) > 0)
    assert (p["prompt_tokens"] == g["prompt_tokens"]).all()
    assert len(p) / p["arrival_s"].max() == pytest.approx(10, rel=0.1)
    pd.testing.assert_frame_equal(p, load_workload("gsm8k", arrivals="poisson:10", seed=3))


def test_registry_describes_every_workload():
    """Tests that every registered workload has a description, source and licence, and its file exists."""
    d = describe_workloads()
    assert d["workload"].tolist() == list(WORKLOADS)
    assert {"gsm8k", "azure-code", "azure-conv", "mooncake-conv"} <= set(WORKLOADS)
    assert d[["description", "source", "licence"]].map(bool).all().all()
    assert d.loc[d["workload"].str.startswith("azure"), "source"].str.contains("Splitwise").all()
    assert "CC-BY-4.0" in attribution("azure-conv") and "Splitwise" in attribution("azure-code")
    assert "Apache-2.0" in attribution("mooncake-conv") and "Mooncake" in attribution(
        "mooncake-conv"
    )
    assert attribution("my_trace.csv") == ""


# --------------------------------------------------------------------------------------
# Window, rate scale, max requests, arrival processes
# --------------------------------------------------------------------------------------


def test_window_keeps_start_to_end_and_rebases(conv):
    """Tests that window 600:1200 keeps exactly the requests with 600 <= t < 1200, in order,
    shifted so the window start is 0."""
    w = load_workload("azure-conv", window="600:1200")
    t = conv["arrival_s"].to_numpy()
    sel = conv[(t >= 600) & (t < 1200)]
    assert w["request_id"].tolist() == sel["request_id"].tolist()
    np.testing.assert_allclose(w["arrival_s"], sel["arrival_s"] - 600, rtol=0, atol=1e-9)
    assert w["arrival_s"].min() >= 0 and w["arrival_s"].max() < 600
    assert workload_info(w)["window_s"] == [600.0, 1200.0]


def test_window_open_ends():
    """Tests that an empty START means 0 and an empty END means the end of the trace."""
    assert parse_window(":100") == (0.0, 100.0)
    assert parse_window("3500:") == (3500.0, float("inf"))
    tail = load_workload("azure-conv", window="3500:")
    assert 0 < len(tail) < 100
    assert workload_info(tail)["window_s"] == [3500.0, None]  # JSON has no infinity


@pytest.mark.parametrize("bad", ["5", "a:b", "10:5", "-1:5", "5:5", "1:2:3", "nan:4"])
def test_bad_window_is_an_error(bad):
    """Tests that a malformed or empty window raises ValueError naming the window."""
    with pytest.raises(ValueError, match="window"):
        parse_window(bad)


def test_window_with_no_requests_says_the_span():
    """Tests that a window past the end of the trace is an error giving the trace's span."""
    with pytest.raises(ValueError, match=r"holds no requests of azure-code.*3435\.9"):
        load_workload("azure-code", window="9000:9100")


def test_rate_scale_two_halves_every_gap_and_the_span():
    """Tests that rate_scale=2 halves every inter-arrival gap and the span, lengths unchanged."""
    a = load_workload("azure-code", window="0:600")
    b = load_workload("azure-code", window="0:600", rate_scale=2)
    np.testing.assert_allclose(np.diff(b["arrival_s"]), np.diff(a["arrival_s"]) / 2, atol=1e-12)
    assert b["arrival_s"].max() == pytest.approx(a["arrival_s"].max() / 2)
    assert (a["prompt_tokens"] == b["prompt_tokens"]).all()


def test_max_requests_takes_the_first_in_arrival_order(conv):
    """Tests that max_requests=N keeps the first N requests after the window, and that a
    larger N than there are requests keeps them all."""
    m = load_workload("azure-conv", window="600:1200", max_requests=25)
    w = load_workload("azure-conv", window="600:1200")
    pd.testing.assert_frame_equal(m, w.iloc[:25])
    assert len(load_workload("azure-code", window="0:10", max_requests=10**6)) == len(
        load_workload("azure-code", window="0:10")
    )


def test_arrival_process_on_trace_lengths():
    """Tests that a poisson process replaces a trace's arrival times but keeps its lengths
    and order, and that rate_scale with a random process is refused."""
    t = load_workload("mooncake-conv", max_requests=200)
    p = load_workload("mooncake-conv", max_requests=200, arrivals="poisson:2", seed=1)
    assert (t["prompt_tokens"] == p["prompt_tokens"]).all()
    assert not np.allclose(t["arrival_s"], p["arrival_s"])
    assert workload_info(p)["arrivals"] == "poisson:2" and workload_info(p)["arrival_seed"] == 1
    with pytest.raises(ValueError, match="rate_scale"):
        load_workload("gsm8k", arrivals="poisson:2", rate_scale=2)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate_scale": 0}, "rate_scale"),
        ({"rate_scale": float("inf")}, "rate_scale"),
        ({"max_requests": 0}, "max_requests"),
        ({"max_requests": 2.5}, "max_requests"),
        ({"fit_context": "clip"}, "fit_context"),
        ({"arrivals": "uniform:3"}, "arrivals"),
        ({"format": "parquet"}, "format"),
    ],
)
def test_bad_options_name_the_field(kwargs, field):
    """Tests that each bad option raises ValueError naming the option."""
    with pytest.raises(ValueError, match=field):
        load_workload("azure-code", **kwargs)


def test_unknown_name_lists_the_known_ones():
    """Tests that an unknown name that is no file lists the shipped names."""
    with pytest.raises(ValueError, match="azure-code, azure-conv, mooncake-conv"):
        load_workload("sharegpt")


# --------------------------------------------------------------------------------------
# Context check
# --------------------------------------------------------------------------------------


def test_context_error_names_request_and_values():
    """Tests that a request longer than the context is an error naming the request, its
    1-based data row, its lengths and the number of such requests."""
    with pytest.raises(ValueError) as info:
        load_workload("mooncake-conv", max_context=32768)
    msg = str(info.value)
    assert "request 11 (data row 12)" in msg
    assert "87169 + 402 = 87571" in msg and "32768" in msg and "846 of 12031" in msg


def test_context_drop_counts_and_keeps_the_rest():
    """Tests that fit_context='drop' removes exactly the requests with s + o > max_context,
    reports how many, and counts only the drops before the N-th kept request."""
    full = load_workload("mooncake-conv")
    need = full["prompt_tokens"] + full["output_tokens"]
    d = load_workload("mooncake-conv", max_context=32768, fit_context="drop")
    assert workload_info(d)["num_dropped"] == int((need > 32768).sum()) == 846
    assert d["request_id"].tolist() == full.loc[need <= 32768, "request_id"].tolist()
    m = load_workload("mooncake-conv", max_context=32768, fit_context="drop", max_requests=50)
    assert len(m) == 50 and m["request_id"].tolist() == d["request_id"].iloc[:50].tolist()
    last = m["request_id"].iloc[-1]
    assert workload_info(m)["num_dropped"] == int((need.iloc[: last + 1] > 32768).sum())


def test_context_check_only_on_selected_requests():
    """Tests that in error mode only the requests kept (window, max_requests) are checked."""
    full = load_workload("mooncake-conv")
    first_bad = int(np.flatnonzero((full["prompt_tokens"] + full["output_tokens"]) > 32768)[0])
    ok = load_workload("mooncake-conv", max_context=32768, max_requests=first_bad)
    assert len(ok) == first_bad


# --------------------------------------------------------------------------------------
# File formats
# --------------------------------------------------------------------------------------

FILES = {
    "hybridsched": (
        "req.csv",
        "request_id,prompt_tokens,output_tokens,arrival_s\n7,10,3,0.5\n8,20,4,1.5\n",
    ),
    "vidur": ("v.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0.5,10,3\n1.5,20,4\n"),
    "splitwise": (
        "s.csv",
        "request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size\n"
        "0,2,0,0.5,1,10,3\n1,2,0,1.5,1,20,4\n",
    ),
    "azure": (
        "a.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.5000000,10,3\n2023-11-16 18:15:47.5000000,20,4\n",
    ),
    "mooncake": (
        "m.jsonl",
        '{"timestamp": 500, "input_length": 10, "output_length": 3, "hash_ids": [0]}\n'
        '{"timestamp": 1500, "input_length": 20, "output_length": 4, "hash_ids": [0, 1]}\n',
    ),
}


@pytest.mark.parametrize("fmt", list(FILES))
def test_each_format_is_detected_and_read(tmp_path, fmt):
    """Tests that a small file of each format is detected and read into the same lengths,
    with arrivals in seconds from the format's origin (Azure: its first timestamp)."""
    name, text = FILES[fmt]
    path = tmp_path / name
    path.write_text(text)
    df = load_workload(path)
    assert workload_info(df)["format"] == fmt
    assert df["prompt_tokens"].tolist() == [10, 20]
    assert df["output_tokens"].tolist() == [3, 4]
    expect = [0.0, 1.0] if fmt == "azure" else [0.5, 1.5]
    np.testing.assert_allclose(df["arrival_s"], expect, atol=1e-9)
    pd.testing.assert_frame_equal(load_workload(path, format=fmt), df)


def test_project_csv_is_read_exactly_as_before(tmp_path):
    """Tests that a project request CSV through requests_for is the same table as
    load_requests gives (ids, predictions and times as written, rows not reordered)."""
    from hybridsched.workloads.requests import load_requests

    path = tmp_path / "r.csv"
    path.write_text("request_id,prompt_tokens,output_tokens,arrival_s\n5,10,3,2.0\n4,20,4,1.0\n")
    pd.testing.assert_frame_equal(requests_for(str(path)), load_requests(path))
    pd.testing.assert_frame_equal(load_workload(path), load_requests(path))


def test_unknown_columns_list_the_known_formats(tmp_path):
    """Tests that a file matching no format is an error listing every known format."""
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="cannot tell the format") as info:
        load_workload(path)
    for f in FORMATS:
        assert f in str(info.value)
    assert "missing column(s) ContextTokens" in _error(detect_format, ["TIMESTAMP", "x"])


def test_given_format_missing_columns(tmp_path):
    """Tests that --format naming a format the file is not in says which columns lack."""
    path = tmp_path / "v.csv"
    path.write_text(FILES["vidur"][1])
    with pytest.raises(ValueError, match="lacks column.*ContextTokens.*azure"):
        read_requests_file(path, "azure")


@pytest.mark.parametrize(
    ("fmt", "text", "shown"),
    [
        ("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\nnot a time,10,3\n", "data row 1"),
        (
            "azure",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,10,0\n",
            "ContextTokens",
        ),
        ("vidur", "arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,1\n0,100.5,3\n", "100.5"),
        (
            "mooncake",
            '{"timestamp": 0, "input_length": 9200000000000000000, "output_length": 1}\n',
            "too large",
        ),
        ("mooncake", "{not json\n", "JSON"),
    ],
)
def test_bad_rows_in_trace_files(tmp_path, fmt, text, shown):
    """Tests that a bad value in a trace file names the file, the format's column names
    and the 1-based data row, with plain values."""
    path = tmp_path / ("t.jsonl" if fmt == "mooncake" else "t.csv")
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_workload(path, format=fmt)
    msg = str(info.value)
    assert shown in msg and str(path) in msg and "np." not in msg


def _error(fn, *args) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args)
    return str(info.value)


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["vidur", "splitwise", "hybridsched"])
def test_export_round_trip(tmp_path, fmt):
    """Tests that exporting a shaped trace and loading the file back gives the same
    lengths and arrivals, bit for bit."""
    df = load_workload("azure-conv", window="600:900", rate_scale=3, max_requests=300)
    path = export_workload(df, tmp_path / f"out.{fmt}.csv", fmt)
    back = load_workload(path)
    assert workload_info(back)["format"] == fmt
    for col in ("prompt_tokens", "output_tokens", "arrival_s"):
        assert back[col].tolist() == df[col].tolist(), col
    assert not list(tmp_path.glob("*.partial"))


def test_export_vidur_columns(tmp_path):
    """Tests that the Vidur export has exactly the columns Vidur's trace replay reads."""
    path = export_workload(load_workload("gsm8k"), tmp_path / "g.csv")
    raw = pd.read_csv(path)
    assert list(raw.columns) == ["arrived_at", "num_prefill_tokens", "num_decode_tokens"]
    assert len(raw) == 1319 and (raw["arrived_at"] == 0).all()
    with pytest.raises(ValueError, match="export formats"):
        export_workload(load_workload("gsm8k"), tmp_path / "g.x", "parquet")


# --------------------------------------------------------------------------------------
# Experiments and CLI
# --------------------------------------------------------------------------------------


def test_requests_for_accepts_a_workload_name():
    """Tests that requests_for takes a workload name and options, then samples as before."""
    df = requests_for("azure-code", 50, 4, workload_options={"window": "0:600"})
    base = load_workload("azure-code", window="0:600")
    assert len(df) == 50 and set(df["request_id"]) <= set(base["request_id"])
    assert np.all(np.diff(df["request_id"]) > 0)  # kept in arrival order
    assert workload_info(df)["window_s"] == [0.0, 600.0]  # survives the sampling
    pd.testing.assert_frame_equal(requests_for(None), load_gsm8k())


def test_cli_export_then_simulate(tmp_path, capsys):
    """Tests `export --format vidur` writes a trace that `simulate --workload FILE` replays,
    recording the workload in metrics.json."""
    import json

    trace = tmp_path / "v.csv"
    assert (
        main(
            [
                "export",
                "--workload",
                "azure-code",
                "--window",
                "0:60",
                "--max-requests",
                "30",
                "--max-context",
                "2048",  # LLaMA-65B's context, so the trace fits the default model
                "--fit-context",
                "drop",
                "--out",
                str(trace),
            ]
        )
        == 0
    )
    exported = pd.read_csv(trace)
    assert len(exported) == 30
    assert (exported["num_prefill_tokens"] + exported["num_decode_tokens"] <= 2048).all()
    out = tmp_path / "run"
    assert main(["simulate", "--workload", str(trace), "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["workload"]["format"] == "vidur" and m["num_requests"] == 30


def test_cli_drop_reports_count(tmp_path, capsys):
    """Tests that --fit-context drop prints how many requests were dropped."""
    out = tmp_path / "m.csv"
    args = ["export", "--workload", "mooncake-conv", "--max-context", "32768", "--out", str(out)]
    assert main([*args, "--fit-context", "drop"]) == 0
    assert "dropped 846 request(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--workload", "nope"], "nope"),
        (["--window", "10:5"], "window"),
        (["--rate-scale", "abc"], "rate-scale"),
        (["--rate-scale", "-1"], "rate-scale"),
        (["--max-requests", "x"], "max-requests"),
        (["--fit-context", "clip"], "fit-context"),
        (["--format", "parquet"], "format"),
        (["--workload", "mooncake-conv", "--max-context", "4096"], "exceeds the model's context"),
    ],
)
def test_cli_bad_workload_option_exits_2(tmp_path, capsys, args, shown):
    """Tests that a bad workload option exits 2 with a one-line message and writes nothing."""
    out = tmp_path / "run"
    base = ["--workload", "azure-code"] if "--workload" not in args else []
    assert main(["simulate", *base, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert shown in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_absurd_prompt_exits_2(tmp_path, capsys):
    """Tests that a request CSV with a 9.2e18-token prompt (once accepted, overflowing into a
    negative KV reservation) exits 2 naming the column, the data row and the plain value."""
    path = tmp_path / "r.csv"
    path.write_text("prompt_tokens,output_tokens\n10,3\n9200000000000000000,3\n")
    out = tmp_path / "run"
    assert main(["simulate", "--requests", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "(data row 2): prompt_tokens is too large to be a real request" in err
    assert "9200000000000000000" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_context_defaults_to_the_model_profile(tmp_path, capsys, monkeypatch):
    """Tests that without --max-context the CLI checks against the model profile's
    max_context when the profile states one, and that --fit-context drop then drops."""
    import types

    import hybridsched.latency.profiles as latency

    real = latency.load_model_profile

    def with_context(name):
        prof = real(name)
        return types.SimpleNamespace(**{**vars(prof), "max_context": 2048})

    monkeypatch.setattr(latency, "load_model_profile", with_context)
    from hybridsched.cli import build_parser
    from hybridsched.cli.options import workload_options

    args = build_parser().parse_args(["simulate", "--workload", "azure-code", "--out", "x"])
    assert workload_options(args)["max_context"] == 2048
    out = tmp_path / "run"
    assert main(["simulate", "--workload", "azure-code", "--out", str(out)]) == 2
    assert "exceeds the model's context of 2048 tokens" in capsys.readouterr().err
    assert not out.exists()
    args = build_parser().parse_args(
        ["simulate", "--workload", "azure-code", "--max-context", "4096", "--out", "x"]
    )
    assert workload_options(args)["max_context"] == 4096  # the option wins
