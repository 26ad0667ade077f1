// Drive the Prefect and MLflow UIs in Debian's headless chromium (playwright-core, no bundled browser).
//   node ui_run.mjs submit <prefectUrl> <deploymentId> <fieldLabel> <value> <outDir>
//       open the deployments page and the deployment, open its Custom run form, set one field, submit;
//       prints {"flow_run_id": ..., "flow_run_name": ...} and saves screenshots 01-05 in outDir.
//   node ui_run.mjs shot <url> <outFile> <text> [<text>...]
//       open a page (e.g. the MLflow run), wait until every text is on it, save a screenshot.
// Pages are "ready" when content that proves they rendered is visible, never at network idle: the MLflow
// UI's telemetry web worker keeps a request open on a machine without internet, so idle never comes.
// Every wait is bounded (TIMEOUT); on a failure the page as it was goes to <name>-failed.png.
import { chromium } from 'playwright-core';
import path from 'node:path';

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const TIMEOUT = 60_000;

async function withPage(failShot, fn) {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: FLAGS,
    timeout: TIMEOUT });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(TIMEOUT);
  page.setDefaultNavigationTimeout(TIMEOUT);
  try {
    return await fn(page);
  } catch (err) {
    await page.screenshot({ path: failShot }).catch(() => {});
    const text = await page.locator('body').innerText({ timeout: 5_000 }).catch(() => '');
    throw new Error(`${err.message}\nat ${page.url()}; visible text: ${text.replace(/\s+/g, ' ').slice(0, 800)}`);
  } finally {
    await browser.close();
  }
}

// Navigation returns once the document is parsed; the caller then waits for the content it needs.
async function open(page, url) {
  await page.goto(url, { waitUntil: 'domcontentloaded' });
}

async function visible(page, text) {
  await page.getByText(text, { exact: false }).first().waitFor({ state: 'visible' });
}

async function submit(prefectUrl, deploymentId, label, value, outDir) {
  return withPage(path.join(outDir, 'submit-failed.png'), async (page) => {
    await open(page, `${prefectUrl}/deployments`);
    await page.getByText('manual', { exact: true }).first().waitFor({ state: 'visible' });
    await visible(page, 'scheduled');
    await page.screenshot({ path: path.join(outDir, '01-deployments.png') });
    await open(page, `${prefectUrl}/deployments/deployment/${deploymentId}`);
    const run = page.getByRole('button', { name: 'Run', exact: true });
    await run.waitFor({ state: 'visible' });
    await visible(page, 'manual');
    await run.click();
    const custom = page.getByText('Custom run').first();
    await custom.waitFor({ state: 'visible' });
    await page.screenshot({ path: path.join(outDir, '02-deployment.png') });
    await custom.click();
    await page.waitForURL(/\/deployment\/[0-9a-f-]+\/run/);
    // The form's labels point at no input id: find the input (numbers) or textarea (strings) inside the
    // field's own property block.
    const field = page.locator(`xpath=//span[@class='schema-form-property__label' and starts-with(normalize-space(.), '${label}')]`
      + "/ancestor::div[contains(concat(' ', @class, ' '), ' schema-form-property ')][1]//*[self::input or self::textarea]").first();
    await field.waitFor({ state: 'visible' });
    await page.screenshot({ path: path.join(outDir, '03-custom-run-form.png') });
    await field.fill(String(value));
    await field.scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(outDir, '04-field-filled.png') });
    const created = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/create_flow_run'),
      { timeout: TIMEOUT });
    await page.getByRole('button', { name: 'Submit' }).click();
    const response = await created;
    if (!response.ok()) throw new Error(`create_flow_run answered ${response.status()}: ${await response.text()}`);
    const flowRun = await response.json();
    await open(page, `${prefectUrl}/runs/flow-run/${flowRun.id}`);
    await visible(page, flowRun.name);  // the run page rendered this run, not a shell
    await visible(page, 'retrain');
    await page.screenshot({ path: path.join(outDir, '05-flow-run.png') });
    return { flow_run_id: flowRun.id, flow_run_name: flowRun.name };
  });
}

async function shot(url, outFile, ...texts) {
  if (texts.length === 0) throw new Error('shot: name at least one text that proves the page rendered');
  return withPage(outFile.replace(/\.png$/, '-failed.png'), async (page) => {
    await open(page, url);
    for (const text of texts) await visible(page, text);
    await page.screenshot({ path: outFile, fullPage: false });
    return { url: page.url(), title: await page.title(), found: texts };
  });
}

const [mode, ...args] = process.argv.slice(2);
const modes = { submit, shot };
if (!modes[mode]) { console.error(`unknown mode ${mode}`); process.exit(2); }
try {
  console.log(JSON.stringify(await modes[mode](...args)));
} catch (err) {
  console.error(err.stack || String(err));
  process.exit(1);
}
