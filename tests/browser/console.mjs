// Drives the Concord web console in headless Chromium, as a person would,
// against a 3-node cluster that the Rust test `tests/it/browser.rs` runs.
//
//   node tests/browser/console.mjs <base-url> [screenshot-dir]
//
// The admin token comes in $CONCORD_TOKEN. Faults are the Rust side's job:
// this script prints a command line on stdout and waits for `ok` on stdin:
//   PARTITION n3   cut n3 off from the other nodes (gossip only)
//   HEAL           heal every link
//   SHIP <id>      ship an order through another node (to see it live here)
// Other lines it prints start with `#`. It ends with `DONE` and exit code 0,
// or exits 1 on the first failed step — including any console error or
// uncaught exception in the page.

import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const [base, shotArg] = process.argv.slice(2);
if (!base) {
  console.error('usage: node console.mjs <base-url> [screenshot-dir]');
  process.exit(2);
}
const token = process.env.CONCORD_TOKEN;
if (!token) {
  console.error('CONCORD_TOKEN must hold an admin token');
  process.exit(2);
}
const shots = resolve(shotArg ?? 'target/screenshots');
const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'chaos-report.json');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
  '--no-first-run', '--disable-component-update', '--disable-sync'];

const log = (msg) => console.log(`# ${msg}`);

// ------------------------------------------------------------------ stdin

const lines = createInterface({ input: process.stdin });
const waiting = [];
let stdinOpen = true;
lines.on('line', (l) => waiting.shift()?.(l.trim()));
lines.on('close', () => {
  stdinOpen = false;
  for (const w of waiting.splice(0)) w('stdin closed');
});

/** Prints a command for the Rust side and waits (bounded) for its `ok`. */
function ask(command, timeoutMs = 20000) {
  if (!stdinOpen) return Promise.reject(new Error(`${command}: stdin closed`));
  return new Promise((resolveAsk, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to ${command} within ${timeoutMs} ms`)), timeoutMs);
    waiting.push((answer) => {
      clearTimeout(timer);
      if (answer === 'ok') resolveAsk();
      else reject(new Error(`${command}: ${answer}`));
    });
    console.log(command);
  });
}

// ------------------------------------------------------------------ browser errors

const errors = [];
let allowed = null;

function watch(page) {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (allowed?.test(m.text())) log(`expected console error: ${m.text()}`);
    else errors.push(`console error: ${m.text()} (${m.location().url}:${m.location().lineNumber})`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.stack ?? e.message}`));
}

/** Runs `fn` while console errors matching `re` are expected (the browser
 * logs every non-2xx response, including the refusals the test provokes). */
async function expecting(re, fn) {
  allowed = re;
  try {
    await fn();
  } finally {
    allowed = null;
  }
}

// ------------------------------------------------------------------ steps

let page;
const started = Date.now();

async function step(name, fn) {
  const t = Date.now();
  log(`step: ${name}`);
  await fn();
  if (errors.length) throw new Error(`browser errors during "${name}":\n  ${errors.join('\n  ')}`);
  log(`  ok (${Date.now() - t} ms)`);
}

async function shot(name, fullPage = true) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage });
  log(`  screenshot ${name}.png`);
}

const text = (sel) => page.locator(sel).first().innerText();

async function nav(label) {
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: label, exact: true }).click();
}

async function waitState(state, timeout) {
  await page.locator(`#convergence[data-state="${state}"]`).waitFor({ timeout });
}

async function run() {
  await step('without a token the cluster view asks for one', async () => {
    await page.goto(`${base}#/cluster`);
    await page.locator('#cluster-needs-admin').waitFor({ timeout: 10000 });
    if (await page.locator('article.node').count()) throw new Error('node cards shown without an admin token');
  });

  await step('keyboard: Tab reaches the skip link, then the views', async () => {
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => document.activeElement?.className);
    if (first !== 'skip') throw new Error(`first Tab focused "${first}", not the skip link`);
    await page.keyboard.press('Enter');
    const focused = await page.evaluate(() => document.activeElement?.id);
    if (focused !== 'app') throw new Error(`the skip link moved focus to "${focused}"`);
  });

  await step('sign in with the admin token', async () => {
    await page.locator('details.token summary').click();
    await page.getByLabel('Bearer token').fill(token);
    await page.getByLabel('Bearer token').press('Enter');
    await page.locator('details.token summary', { hasText: 'admin' }).waitFor({ timeout: 5000 });
  });

  await step('cluster view turns green', async () => {
    await nav('Cluster');
    await waitState('converged', 30000);
    const nodes = await page.locator('article.node').count();
    if (nodes !== 3) throw new Error(`expected 3 node cards, saw ${nodes}`);
    await page.locator('article.node[data-node="n1"] li[data-peer="n3"][data-alive="true"]').waitFor({ timeout: 10000 });
    await shot('cluster');
  });

  await step('catalog: 12 categories', async () => {
    await nav('Catalog');
    await page.locator('nav.categories a.chip').nth(12).waitFor({ timeout: 15000 });
    const chips = await page.locator('nav.categories a.chip').count();
    if (chips !== 13) throw new Error(`expected All + 12 categories, saw ${chips}`);
    await page.locator('ul.products li.card').first().waitFor({ timeout: 10000 });
    await page.locator('nav.categories a.chip', { hasText: 'kitchen' }).click();
    await page.locator('h1', { hasText: 'kitchen' }).waitFor({ timeout: 5000 });
    await page.locator('ul.products li.card').first().waitFor({ timeout: 10000 });
    await shot('catalog');
  });

  let productName;
  await step('search "espresso" and open the best hit', async () => {
    await page.getByLabel(/Search/).fill('espresso');
    await page.getByLabel(/Search/).press('Enter');
    await page.locator('ol.hits li').first().waitFor({ timeout: 10000 });
    const first = page.locator('ol.hits li').first();
    productName = await first.locator('a.name').innerText();
    if (!/espresso/i.test(productName)) throw new Error(`best hit for "espresso" is "${productName}"`);
    if (!/score \d/.test(await first.locator('.score').innerText())) throw new Error('hits show no score');
    await first.locator('a.name').click();
    await page.locator('h1', { hasText: productName }).waitFor({ timeout: 10000 });
    await page.locator('svg.chart circle.step-point').first().waitFor({ timeout: 10000 });
    await page.getByRole('heading', { name: 'Stock and rights' }).waitFor();
  });

  await step('add the product to this browser\'s cart', async () => {
    await page.getByRole('button', { name: 'Add to cart' }).click();
    await page.locator('.buy [role="status"]', { hasText: 'holds 1 unit' }).waitFor({ timeout: 10000 });
    await shot('product');
  });

  await step('partition n3 and write on n1: the cluster turns red', async () => {
    await ask('PARTITION n3');
    await page.getByRole('button', { name: 'Add to cart' }).click();
    await page.locator('.buy [role="status"]', { hasText: 'holds 2 units' }).waitFor({ timeout: 10000 });
    await nav('Cluster');
    await waitState('diverged', 15000);
    // QUIC gives up on a silent peer after its 5 s idle timeout.
    await page.locator('article.node[data-node="n1"] li[data-peer="n3"][data-alive="false"]').waitFor({ timeout: 20000 });
    await page.locator('article.node[data-node="n3"] li[data-peer="n1"][data-alive="false"]').waitFor({ timeout: 10000 });
    await shot('cluster-red');
  });

  await step('diff n1 and n3 shows the cart on both sides', async () => {
    await page.getByLabel('Node A').selectOption('n1');
    await page.getByLabel('Node B').selectOption('n3');
    await page.getByRole('button', { name: 'Diff', exact: true }).click();
    await page.locator('.diff-keys tbody tr').first().waitFor({ timeout: 15000 });
    const keys = await text('.diff-keys tbody');
    if (!/carts/.test(keys)) throw new Error(`the diff does not name the cart:\n${keys.slice(0, 400)}`);
    await page.locator('section.diff').scrollIntoViewIfNeeded();
    await shot('diff');
  });

  await step('heal: the cluster turns green again', async () => {
    await ask('HEAL');
    await waitState('converged', 20000);
    await page.getByRole('button', { name: 'Diff', exact: true }).click();
    await page.getByText('No difference').waitFor({ timeout: 10000 });
  });

  let orderId;
  await step('carts: open this browser\'s cart and check it out', async () => {
    await nav('Carts');
    await page.locator('tr.mine a').waitFor({ timeout: 10000 });
    await page.locator('tr.mine a').click();
    await page.getByRole('link', { name: productName }).waitFor({ timeout: 10000 });
    const qty = await page.locator('input[type="number"]').first().inputValue();
    if (qty !== '2') throw new Error(`the cart holds ${qty} units, not 2`);
    await page.getByLabel('Name', { exact: true }).fill('Ada Lovelace');
    await page.getByLabel('Address', { exact: true }).fill('12 St James\'s Square');
    await page.getByLabel('City').fill('London');
    await page.getByLabel('Postal code').fill('SW1Y 4JH');
    await shot('carts');
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.waitForURL(/#\/order\//, { timeout: 15000 });
    orderId = decodeURIComponent(new URL(page.url()).hash.split('/').pop());
    await page.locator('#order-status', { hasText: 'placed' }).waitFor({ timeout: 10000 });
  });

  await step('order: pay, an illegal move shows 409, a ship elsewhere arrives live', async () => {
    await page.getByRole('button', { name: 'Pay', exact: true }).click();
    await page.locator('#order-status', { hasText: 'paid' }).waitFor({ timeout: 10000 });
    await expecting(/status of 409/, async () => {
      await page.getByRole('button', { name: 'Deliver' }).click();
      await page.locator('.out .error', { hasText: '409' }).waitFor({ timeout: 10000 });
    });
    const shown = await text('.out .error');
    if (!/illegal_transition/.test(shown)) throw new Error(`the refusal shows "${shown}"`);
    await ask(`SHIP ${orderId}`);
    await page.locator('#order-status', { hasText: 'shipped' }).waitFor({ timeout: 10000 });
    await page.getByText('Status changed to shipped (live)').waitFor({ timeout: 2000 });
    await shot('orders');
    await nav('Orders');
    await page.locator(`tr[data-order="${orderId}"] .status`, { hasText: 'shipped' }).waitFor({ timeout: 10000 });
  });

  await step('chaos: open the fixture report', async () => {
    await nav('Chaos');
    await page.getByLabel('Report (JSON)').setInputFiles(fixture);
    await page.locator('svg.chart circle.op').nth(100).waitFor({ timeout: 10000 });
    const bands = await page.locator('svg.chart .fault .band').count();
    const verdicts = await page.locator('ul.verdicts li').count();
    const heals = await page.locator('svg.chart .heal').count();
    if (bands < 4 || verdicts !== 4 || heals < 1) throw new Error(`timeline shows ${bands} faults, ${verdicts} verdicts, ${heals} heals`);
    await shot('chaos');
  });

  await step('phone width: no view scrolls sideways', async () => {
    await page.setViewportSize(PHONE);
    for (const hash of ['#/cluster', '#/catalog', '#/orders', '#/carts', '#/chaos', `#/order/${orderId}`]) {
      await page.goto(`${base}${hash}`);
      await page.locator('main h1').first().waitFor({ timeout: 10000 });
      await page.waitForTimeout(300);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      if (width > PHONE.width) throw new Error(`${hash} is ${width} px wide at phone width`);
    }
    await page.goto(`${base}#/catalog`);
    await page.locator('ul.products li.card').first().waitFor({ timeout: 10000 });
    await shot('catalog-phone', false);
    await page.setViewportSize(DESKTOP);
  });

  await step('a shopper signs up in the browser, fills a cart and orders', async () => {
    await page.locator('details.token summary').click();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('details.token summary', { hasText: 'Sign in' }).waitFor({ timeout: 5000 });
    await page.locator('details.token summary').click();
    await page.getByLabel('E-mail').fill('shopper@example.com');
    await page.getByLabel('Password', { exact: true }).fill('a long enough password');
    await page.getByLabel(/^Name/).fill('Grace Hopper');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.locator('details.token summary', { hasText: 'Signed in: shopper@example.com (customer)' }).waitFor({ timeout: 10000 });
    await page.getByLabel(/Search/).fill('espresso');
    await page.getByLabel(/Search/).press('Enter');
    await page.locator('ol.hits li a.name').first().click();
    await page.getByRole('button', { name: 'Add to cart' }).click();
    await page.locator('.buy [role="status"]', { hasText: 'holds 1 unit' }).waitFor({ timeout: 10000 });
    await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'My cart' }).click();
    await page.getByLabel('Name', { exact: true }).fill('Grace Hopper');
    await page.getByLabel('Address', { exact: true }).fill('1 Navy Yard');
    await page.getByLabel('City').fill('Arlington');
    await page.getByLabel('Postal code').fill('22202');
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.waitForURL(/#\/order\//, { timeout: 15000 });
    await page.locator('#order-status', { hasText: 'placed' }).waitFor({ timeout: 10000 });
    // A shopper cannot mark the order paid; they pay by card.
    if (await page.getByRole('button', { name: 'Pay', exact: true }).count() !== 0) {
      throw new Error('a shopper is offered the status-only Pay move');
    }
    await page.getByLabel('Card number').fill('4000 0000 0000 0002');
    await expecting(/status of 402/, async () => {
      await page.getByRole('button', { name: 'Pay by card' }).click();
      await page.locator('.out .error', { hasText: 'card_declined' }).waitFor({ timeout: 15000 });
    });
    await page.getByLabel('Card number').fill('4242 4242 4242 4242');
    await page.getByRole('button', { name: 'Pay by card' }).click();
    await page.locator('#order-status', { hasText: 'paid' }).waitFor({ timeout: 15000 });
    await page.locator('#payment-status', { hasText: 'succeeded' }).waitFor({ timeout: 5000 });
    await shot('shopper-order');
  });
}

// ------------------------------------------------------------------ main

mkdirSync(shots, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'concord-chromium-'));
let context;
let code = 0;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: DESKTOP,
  });
  page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(15000);
  watch(page);
  await run();
  log(`all steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log('DONE');
} catch (e) {
  code = 1;
  console.error(`FAILED: ${e.stack ?? e.message}`);
  if (page) await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  lines.close();
}
process.exit(code);
