"""The demo page's stylesheet and its small accessibility script (both passed to ``Blocks.launch``).

The script fills in what Gradio's own markup leaves out and no component setting reaches: names for the
example thumbnails (buttons holding only an image), a role for the "empty value" placeholders that carry
an aria-label, and empty alt text on the footer's icons (their text is beside them). It re-applies
itself whenever Gradio re-renders.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

CSS = """
.block.cxr-note {border-left: 4px solid #1d4ed8; background: #eff6ff; padding: 6px 12px !important; border-radius: 6px;}
.block.cxr-untrained {border-left: 4px solid #b91c1c; background: #fef2f2; padding: 6px 12px !important;
  border-radius: 6px;}
.cxr-untrained p {color: #7f1d1d;}
.cxr-note p, .cxr-untrained p {margin: 0 !important; font-size: 0.9rem !important;}
#caption {min-height: 1.6em;}
#findings button, #at-chance button {cursor: pointer;}
#findings dt, #at-chance dt {font-family: var(--font) !important;}
/* whole percents: the one-decimal value is in each row's name */
#findings dd.confidence, #at-chance dd.confidence {display: none;}
/* Labels at chance: greyed (grey bars, slate text that still reads at 4.5:1 or more), below the others. */
#at-chance {--stat-background-fill: #94a3b8; background: #f1f5f9;}
#at-chance dt {color: #475569 !important;}
/* The upload box shows its whole prompt: its label above it (not floating over it), no icon behind the text. */
#upload label[data-testid="block-label"] {position: static !important;}
#upload [data-testid="upload-text"] {min-height: 0 !important; padding: 0 !important;}
#upload .icon-wrap {display: none !important;}
/* An image of any size fills its panel, so a 40 px image or a CT slice is shown as large as a radiograph. */
#images .image-container, #images .image-frame {width: 100%; height: 100%;}
#images img {width: 100% !important; height: 100% !important; min-height: 200px; object-fit: contain;}
/* Gradio's light-grey small print reads at less than 4.5:1; these reach it. */
#upload .or, footer, footer a, footer button {color: #475569 !important;}
.dark #upload .or, .dark footer, .dark footer a, .dark footer button {color: #cbd5e1 !important;}
#about code {overflow-wrap: anywhere; white-space: normal;}
#examples img {height: 72px; width: 72px; object-fit: cover;}
@media (max-width: 640px) {
  /* A phone gets one column, results first: upload, images, caption, findings, then the controls and examples. */
  h1 {font-size: 1.05rem !important; margin: 0 !important;}
  .block.cxr-note, .block.cxr-untrained {padding: 4px 8px !important;}
  .cxr-note p, .cxr-untrained p {font-size: 0.75rem !important; line-height: 1.3 !important;}
  #main {flex-direction: column; flex-wrap: nowrap;}
  #main > .column {display: contents;}
  #upload {order: 1;} #images {order: 2;} #caption {order: 3;} #findings {order: 4;} #at-chance {order: 5;}
  #controls {order: 6;} #examples {order: 7;}
  #images {flex-wrap: nowrap !important; gap: 6px !important;}
  #images > div {min-width: 0 !important;}
  #images img {min-height: 120px;}
  #findings button, #at-chance button {padding-top: 0; padding-bottom: 0;}
}
"""

# What an empty panel is called until it has a value (Gradio names each of them "Empty value").
EMPTY_NAMES = {
    "original": "No radiograph yet",
    "overlay": "No heatmap yet",
    "findings": "No findings yet",
    "at-chance": "No findings yet",
}

_SCRIPT = """
() => {
  const examples = __EXAMPLES__;
  const empty = __EMPTY__;
  const name = () => {
    document.querySelectorAll("#examples button.gallery-item").forEach((button, i) => {
      const label = examples[i];
      if (label && button.getAttribute("aria-label") !== label) button.setAttribute("aria-label", label);
    });
    for (const [id, text] of Object.entries(empty)) {
      document.querySelectorAll(`#${id} .empty[aria-label]`).forEach((box) => {
        box.setAttribute("role", "img");
        box.setAttribute("aria-label", text);
      });
    }
    document.querySelectorAll("footer img[alt]:not([alt=''])").forEach((icon) => icon.setAttribute("alt", ""));
  };
  name();
  new MutationObserver(name).observe(document.body, {childList: true, subtree: true});
}
"""


def page_script(example_names: Sequence[str]) -> str:
    """The script for ``launch(js=...)``; ``example_names`` name the example thumbnails, in their order."""
    return _SCRIPT.replace("__EXAMPLES__", json.dumps(list(example_names))).replace(
        "__EMPTY__", json.dumps(EMPTY_NAMES)
    )
