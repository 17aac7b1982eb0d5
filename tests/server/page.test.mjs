// page.test.mjs - drives the upload page (GET /) of a running `frcnn serve` in headless
// Chromium (Debian's chromium, playwright-core): the model line loads, an uploaded photo is
// detected and drawn, the score slider filters boxes and table rows, an unsupported file
// shows the JSON error, and the page logs no error (CSP included).
// usage: node page.test.mjs URL PHOTO       (run by tests/server/page_test.sh)
// PAGE_TEST_SCREENSHOT=FILE.png saves the page with the slider at 0.3.
import { chromium } from "playwright-core";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, photo] = process.argv.slice(2);
let passed = 0, failed = 0;
function check(cond, what) {
  if (cond) passed++;
  else { failed++; console.error("  FAIL " + what); }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    // the browser logs every non-2xx fetch; the 415 below is expected
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) errors.push(m.text());
  });

  const answer = await page.goto(url);
  check(answer.status() === 200, "GET / answers 200");
  await page.waitForFunction(() => document.getElementById("model").textContent.includes("classes"),
                             null, { timeout: 10000 });
  check(/model: .+ \(\d+ classes\)/.test(await page.textContent("#model")), "model line");

  // upload a photo: boxes drawn, counts shown
  await page.setInputFiles("#file", photo);
  await page.waitForFunction(() => / of \d+ shown/.test(document.getElementById("count").textContent),
                             null, { timeout: 120000 });
  const status = await page.textContent("#status");
  check(/^\d+\u00d7\d+, \d+ detections in \d+ ms$/.test(status), "status line: " + status);
  const canvas = await page.$eval("#canvas", (c) => [c.width, c.height]);
  check(canvas[0] > 0 && canvas[1] > 0, "canvas sized " + canvas);
  const total = await page.$eval("#count", (e) => parseInt(e.textContent.split(" of ")[1], 10));
  check(total > 0, "detections returned: " + total);

  const setSlider = (v) => page.$eval("#threshold", (el, v) => {
    el.value = v;
    el.dispatchEvent(new Event("input"));
  }, v);
  const shown = () => page.$eval("#count", (e) => parseInt(e.textContent, 10));
  const rows = () => page.$$eval("#detections tbody tr", (r) => r.length);
  const pixels = () => page.$eval("#canvas", (c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) | 0;
    return h;
  });

  await setSlider("0.3");
  if (process.env.PAGE_TEST_SCREENSHOT) await page.screenshot({ path: process.env.PAGE_TEST_SCREENSHOT, fullPage: true });
  await setSlider("0");
  const all = await shown();
  check(all === total, `slider 0 shows all (${all} of ${total})`);
  check((await rows()) === all, "one table row per shown box");
  const withBoxes = await pixels();
  await setSlider("1");
  const none = await shown();
  check(none === 0 || none < all, `slider 1 hides boxes (${none})`);
  check((await rows()) === none, "table follows the slider");
  check((await pixels()) !== withBoxes, "canvas redrawn without the boxes");
  check((await page.textContent("#threshold-value")) === "1.00", "slider value shown");

  // an unsupported file: the JSON error is shown
  const dir = mkdtempSync(join(tmpdir(), "frcnn-page-"));
  const text = join(dir, "notes.txt");
  writeFileSync(text, "not an image");
  await page.setInputFiles("#file", text);
  await page.waitForFunction(() => document.getElementById("status").className === "error",
                             null, { timeout: 10000 });
  const err = await page.textContent("#status");
  check(/^error 415: /.test(err), "error shown: " + err);
  check(errors.length === 0, "no page errors: " + errors.join(" | "));
} finally {
  await browser.close();
}
console.log(`page.test.mjs: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
