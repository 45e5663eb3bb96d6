"""Console map benchmark: the demo city in the operator console, in headless Chromium.

Loads the Nîmes Métropole demo city (39,207 entities, 35,000 streetlights) into a temporary
data directory, serves it with a real ``cityvisor serve --no-auth`` process, opens
``/console/`` in Debian's Chromium (Playwright, software WebGL via SwiftShader, as in the
browser tests) already signed in, and measures:

* ``first_paint_ms``: navigation start -> every layer (all 35,000 streetlights included) loaded
  and drawn (the map's first ``idle`` after the last layer was added);
* ``streetlights_layer``: the ``/console/api/layers/streetlights`` response (server build and
  serve times from ``Server-Timing``, wall time seen by the browser, bytes decoded);
* ``second_console_*``: the same for a second console opened while the first one watches (its
  layers come from the server's live in-memory cache);
* frame times while panning over the whole city (``requestAnimationFrame`` deltas while the
  map pans a few pixels each frame): median and p95.

Prints ONE JSON line on stdout. Usage::

    .venv/bin/python benchmarks/console_map.py [--frames 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import BenchServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

PAN = """async (frames) => {
  const map = window.cityvisorConsole.map.map;
  map.jumpTo({center: [4.36, 43.84], zoom: 12});
  await new Promise((resolve) => map.once('idle', resolve));
  const deltas = [];
  let last = performance.now();
  for (let i = 0; i < frames; i++) {
    const angle = (i / frames) * 2 * Math.PI;
    map.panBy([Math.cos(angle) * 12, Math.sin(angle) * 12], {duration: 0});
    await new Promise((resolve) => requestAnimationFrame(resolve));
    const now = performance.now();
    deltas.push(now - last);
    last = now;
  }
  return deltas;
}"""


async def load_city(data_dir: Path) -> tuple[int, float]:
    from cityvisor.config import Settings
    from cityvisor.demo import load_demo_city
    from cityvisor.services import Services

    services = Services.build(Settings(data_dir=data_dir, auth=False, allow_context_fetch=False))
    try:
        return await load_demo_city(services)
    finally:
        await services.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames of panning to time")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="cityvisor-console-bench-"))
    try:
        entities, load_s = asyncio.run(load_city(root / "data"))
        with BenchServer.start(data_dir=root) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                      "--ignore-gpu-blocklist"])
            page = browser.new_page(locale="fr-FR", viewport={"width": 1400, "height": 900})
            page.add_init_script("sessionStorage.setItem('cityvisor.session', "
                                 "JSON.stringify({name: 'benchmark', tenant: 'nimes'}))")
            layer: dict[str, float] = {}

            def on_response(response: object) -> None:
                if response.url.endswith("/console/api/layers/streetlights"):  # type: ignore[attr-defined]
                    timing = response.headers.get("server-timing", "")  # type: ignore[attr-defined]
                    durations = dict(part.strip().split(";dur=") for part in timing.split(",")
                                     if ";dur=" in part)
                    layer["server_build_ms"] = float(durations.get("build", -1))
                    layer["server_serve_ms"] = float(durations.get("serve", -1))
                    layer["bytes"] = len(response.body())  # type: ignore[attr-defined]
                    request_timing = response.request.timing  # type: ignore[attr-defined]
                    layer["browser_ms"] = round(request_timing["responseEnd"], 1)

            page.on("response", on_response)
            started = time.perf_counter()
            page.goto(server.url + "/console/")
            page.wait_for_function("() => window.cityvisorConsole.firstPaintMs !== null",
                                   timeout=300_000)
            wall_s = time.perf_counter() - started
            first_paint = page.evaluate("window.cityvisorConsole.firstPaintMs")
            drawn = page.evaluate("window.cityvisorConsole.map.layers.streetlights.features.length")
            cold_layer = dict(layer)
            # a second console while the first one watches: layers come from the live cache
            second = browser.new_page(locale="fr-FR", viewport={"width": 1400, "height": 900})
            second.add_init_script("sessionStorage.setItem('cityvisor.session', "
                                   "JSON.stringify({name: 'second', tenant: 'nimes'}))")
            second.on("response", on_response)
            second.goto(server.url + "/console/")
            second.wait_for_function("() => window.cityvisorConsole.firstPaintMs !== null",
                                     timeout=300_000)
            second_paint = second.evaluate("window.cityvisorConsole.firstPaintMs")
            warm_layer = dict(layer)
            second.close()
            page.evaluate(PAN, 20)  # warm-up
            deltas = page.evaluate(PAN, args.frames)
            browser.close()
            rss = server.rss_mb()
        figures = {
            "benchmark": "console_map", "entities": entities, "demo_load_s": round(load_s, 1),
            "streetlights_drawn": drawn, "first_paint_ms": round(first_paint),
            "first_paint_wall_s": round(wall_s, 2), "streetlights_layer": cold_layer,
            "second_console_first_paint_ms": round(second_paint),
            "second_console_streetlights_layer": warm_layer,
            "pan_frames": len(deltas), "frame_ms_median": round(percentile(deltas, 0.5), 1),
            "frame_ms_p95": round(percentile(deltas, 0.95), 1),
            "fps_median": round(1000 / percentile(deltas, 0.5), 1),
            "server_rss_mb": rss, "renderer": "chromium headless, SwiftShader (software WebGL)",
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        }
        print(json.dumps(figures))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
