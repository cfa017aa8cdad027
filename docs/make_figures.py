"""Writes the README's figures from the code, so they can be made again after a change.

python docs/make_figures.py    # rewrite docs/img/graph.svg

``docs/img/graph.svg`` is the static SVG fallback of the graph widget (``%sage_graph``,
``env.graph()``; drawn by ``sage_nb/notebook/widgets/render.py``) for the README's ten-line
example, after it ran. The latency line of the service changes from run to run; the rest is
stable. Needs the notebook extra (ipywidgets): ``pip install -e ".[notebook]"``.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from sage_nb import LocalEnvironment, MapFunction
from sage_nb.notebook.widgets import GraphView

OUT = Path(__file__).with_name("img") / "graph.svg"


def readme_example_graph() -> str:
    """Run the README's example and return the graph view's SVG, on a white background."""
    # keep_services: the service box shows the running service (as in a notebook's sage_env)
    # instead of the stopped one a script's blocking submit leaves behind.
    with LocalEnvironment("demo", keep_services=True) as env:

        @env.register_service("profile")
        class ProfileService:
            def process(self, user_id: str):
                return {"user_id": user_id, "score": 0.9}

        class Enrich(MapFunction):
            def execute(self, record):
                return {**record, "profile": self.call_service("profile", record["user_id"])}

        env.from_batch([{"user_id": "42"}]).map(Enrich()).sink(print)
        with contextlib.redirect_stdout(io.StringIO()):
            job = env.submit()
        html = GraphView(env, job).render()
    match = re.search(r"<svg\b.*</svg>", html, re.S)
    if match is None:
        raise RuntimeError("the graph view rendered no <svg> element")
    svg = match.group(0)
    # As a file the figure needs its own size (in a notebook it scales to the output).
    box = re.search(r'viewBox="0 0 (\d+) (\d+)"', svg)
    if box is not None:
        svg = svg.replace('width="100%"', f'width="{box[1]}" height="{box[2]}"', 1)
    # A white background, so the figure reads on dark pages too.
    opening = svg.index(">") + 1
    return svg[:opening] + '<rect width="100%" height="100%" fill="#ffffff"/>' + svg[opening:]


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(readme_example_graph() + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
