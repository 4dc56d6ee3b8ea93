// The login page: a link of the form /ui/login#token=SECRET (printed by `baton demo`)
// logs in at once. The fragment never reaches the server or its logs; it is removed
// from the address bar before the form is sent.
"use strict";
(function () {
  const m = location.hash.match(/^#token=(.+)$/);
  if (!m) return;
  history.replaceState(null, "", location.pathname);
  document.getElementById("token").value = decodeURIComponent(m[1]);
  document.getElementById("login").submit();
})();
