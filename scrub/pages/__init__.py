"""Self-contained HTML pages: the run report (:mod:`scrub.pages.report`) and its SVG charts."""
