"""The benchmarks draw their own results: bench/plot.py's SVG and serve.py's --plot."""

from __future__ import annotations

import importlib.util
import sys
import xml.etree.ElementTree as ET

import pytest

from charm_context import PROJECT

SVG = "{http://www.w3.org/2000/svg}"


def load(name: str):
    """A module of bench/, which runs as scripts rather than a package."""
    sys.path.insert(0, str(PROJECT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location(
            f"bench_{name}", PROJECT / f"bench/{name}.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(PROJECT / "bench"))


def bars(svg: str) -> dict[str, float]:
    """Each bar's tooltip and its height in pixels."""
    root = ET.fromstring(svg)
    return {
        title.text or "": float(rect.get("height", "0"))
        for rect in root.iter(f"{SVG}rect")
        if (title := rect.find(f"{SVG}title")) is not None
    }


@pytest.mark.parametrize(
    ("value", "ceiling", "step"),
    [
        (0.4, 1, 0.25),
        (2.13, 2.5, 0.5),
        (7, 10, 2.5),
        (180, 200, 50),
        (1000, 1000, 250),
        (2100, 2500, 500),
        (3500, 4000, 1000),
        (4999, 5000, 1000),
    ],
)
def test_the_value_axis_ends_at_a_round_number_in_round_steps(value, ceiling, step):
    plot = load("plot")
    assert plot.nice_ceiling(value) == ceiling
    assert ceiling / plot.tick_count(ceiling) == step


@pytest.mark.parametrize(("value", "shown"), [(1136.4, "1136"), (100, "100"), (0.794, "0.794")])
def test_bars_are_labelled_with_whole_numbers_or_three_digits(value, shown):
    assert load("plot").label(value) == shown


def test_a_chart_has_one_bar_per_value_scaled_to_it():
    panels = {
        "plain": {"1 client": {"registry": 900.0, "nginx": 1000.0}},
        "TLS <x> & y": {"1 client": {"registry": 450.0, "nginx": 500.0}},
    }
    svg = load("plot").bar_chart("Title", panels, "MB/s", ["measured <here>"])
    heights = bars(svg)
    assert sorted(heights) == [
        "TLS <x> & y, 1 client, nginx: 500 MB/s",
        "TLS <x> & y, 1 client, registry: 450 MB/s",
        "plain, 1 client, nginx: 1000 MB/s",
        "plain, 1 client, registry: 900 MB/s",
    ]
    full = heights["plain, 1 client, nginx: 1000 MB/s"]
    assert heights["plain, 1 client, registry: 900 MB/s"] == pytest.approx(0.9 * full, abs=0.1)
    assert heights["TLS <x> & y, 1 client, nginx: 500 MB/s"] == pytest.approx(full / 2, abs=0.1)
    assert "measured &lt;here&gt;" in svg


def test_serve_plots_each_variant_against_nginx_but_not_the_gogc_comparison():
    serve = load("serve")
    results = {
        (variant, f"{server} blob {clients} mbps"): [100.0 * clients, 300.0 * clients]
        for variant in ("plain", "TLS")
        for server in ("registry", "nginx")
        for clients in serve.CLIENTS
    }
    results[("GOGC", "registry manifests rps")] = [2000.0]
    heights = bars(serve.plot(results, rounds=2, seconds=1.5))
    assert len(heights) == 2 * 2 * len(serve.CLIENTS)
    assert "TLS, 16 clients, nginx: 3200 MB/s" in heights  # the median of 1600 and 4800
    assert not any(name.startswith("GOGC") for name in heights)


def test_hook_plots_each_process_with_its_ratio_to_import_ops():
    hook = load("hook")
    times = {"update-status": [0.30, 0.28, 0.29], hook.IMPORT_OPS: [0.14, 0.15, 0.13]}
    heights = bars(hook.plot(times, rounds=3))
    assert set(heights) == {
        "update-status, 2.07x, median: 0.29 s",
        f"{hook.IMPORT_OPS}, 1.00x, median: 0.14 s",
    }
