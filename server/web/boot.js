// boot starts the page's first reads at once, while the modules load, so
// their answers arrive meanwhile: app.js (js/api.js) takes each of them
// once, instead of fetching the same path again. A classic script, so it
// runs before the module graph is loaded.
'use strict';

(() => {
  const headers = { Accept: 'application/json' };
  const tok = sessionStorage.getItem('allot.token');
  if (tok) headers.Authorization = 'Bearer ' + tok;
  const reads = {};
  for (const path of ['/v1/status', '/v1/groups', '/v1/usage?since=1h', '/v1/schedule', '/v1/events/recent?count=100']) {
    reads[path] = fetch(path, { headers, cache: 'no-store' });
    reads[path].catch(() => {}); // a failed read is fetched again by the page
  }
  window.allotBoot = reads;
})();
