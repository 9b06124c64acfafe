// GraphiQL in headless Chromium with no way out: every asset must come from Unity. The docs
// explorer lists Query's fields, and a query runs. UNITY_URL as for the other checks;
// CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { check } from './lib.mjs';

const base = process.env.UNITY_URL;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  const elsewhere = [];
  // Offline: anything not asked of Unity itself is refused, and noted.
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(base)) return route.continue();
    elsewhere.push(url);
    return route.abort();
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const query = '{ __schema { queryType { name } } }';
  await page.goto(`${base}/graphiql?query=${encodeURIComponent(query)}`);
  await page.waitForSelector('.graphiql-container', { timeout: 30000 });
  check(elsewhere.length === 0, `nothing is loaded from elsewhere: ${elsewhere.join(', ')}`);

  // The documentation explorer: Query and its fields.
  await page.click('button[aria-label="Show Documentation Explorer"]');
  await page.click('.graphiql-doc-explorer a.graphiql-doc-explorer-type-name:has-text("Query")', { timeout: 30000 });
  const fields = await page.locator('.graphiql-doc-explorer-field-name').allTextContents();
  check(fields.includes('me') && fields.includes('auditLog'), `the docs list Query's fields (${fields.length}: ${fields.slice(0, 5).join(', ')}, …)`);
  const description = await page.locator('.graphiql-doc-explorer-content').innerText();
  check(description.includes('The signed-in user'), 'the docs show field descriptions');

  // Run the query from the URL.
  await page.click('button.graphiql-execute-button');
  await page.waitForFunction(() => document.querySelector('.result-window')?.innerText.includes('"Query"'), null, { timeout: 30000 });
  check(true, 'a query runs and its answer is shown');
  check(errors.length === 0, `no script errors: ${errors.join('; ')}`);
} finally {
  await browser.close();
}
console.log('graphiql: all checks passed');
