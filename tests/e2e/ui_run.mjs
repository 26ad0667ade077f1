// Drive the Prefect and MLflow UIs in Debian's headless chromium (playwright-core, no bundled browser).
//   node ui_run.mjs submit <prefectUrl> <deploymentId> <fieldLabel> <value> <outDir>
//       open the deployments page and the deployment, open its Custom run form, set one field, submit;
//       prints {"flow_run_id": ...} and saves screenshots 01-05 in outDir.
//   node ui_run.mjs shot <url> <waitForText> <outFile>
//       open a page (e.g. the MLflow run), wait for a text, save a screenshot.
import { chromium } from 'playwright-core';
import path from 'node:path';

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const TIMEOUT = 60_000;

async function withPage(fn) {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: FLAGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.setDefaultTimeout(TIMEOUT);
    return await fn(page);
  } finally {
    await browser.close();
  }
}

async function submit(prefectUrl, deploymentId, label, value, outDir) {
  return withPage(async (page) => {
    await page.goto(`${prefectUrl}/deployments`, { waitUntil: 'networkidle' });
    await page.getByText('manual', { exact: true }).first().waitFor();
    await page.screenshot({ path: path.join(outDir, '01-deployments.png') });
    await page.goto(`${prefectUrl}/deployments/deployment/${deploymentId}`, { waitUntil: 'networkidle' });
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await page.screenshot({ path: path.join(outDir, '02-deployment.png') });
    await page.getByText('Custom run').first().click();
    await page.waitForURL(/\/deployment\/[0-9a-f-]+\/run/);
    // The form's labels point at no input id: find the input inside the field's own property block.
    const field = page.locator(`xpath=//span[@class='schema-form-property__label' and starts-with(normalize-space(.), '${label}')]`
      + "/ancestor::div[contains(concat(' ', @class, ' '), ' schema-form-property ')][1]//input").first();
    await field.waitFor();
    await page.screenshot({ path: path.join(outDir, '03-custom-run-form.png') });
    await field.fill(String(value));
    await field.scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(outDir, '04-field-filled.png') });
    const created = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/create_flow_run'));
    await page.getByRole('button', { name: 'Submit' }).click();
    const response = await created;
    if (!response.ok()) throw new Error(`create_flow_run answered ${response.status()}: ${await response.text()}`);
    const flowRunId = (await response.json()).id;
    await page.goto(`${prefectUrl}/runs/flow-run/${flowRunId}`, { waitUntil: 'networkidle' });
    await page.getByText('retrain').first().waitFor();
    await page.screenshot({ path: path.join(outDir, '05-flow-run.png') });
    return { flow_run_id: flowRunId };
  });
}

async function shot(url, text, outFile) {
  return withPage(async (page) => {
    await page.goto(url, { waitUntil: 'networkidle' });
    await page.getByText(text).first().waitFor();
    await page.screenshot({ path: outFile, fullPage: false });
    return { url: page.url(), title: await page.title() };
  });
}

const [mode, ...args] = process.argv.slice(2);
const result = mode === 'submit' ? await submit(...args) : mode === 'shot' ? await shot(...args) : null;
if (!result) { console.error(`unknown mode ${mode}`); process.exit(2); }
console.log(JSON.stringify(result));
