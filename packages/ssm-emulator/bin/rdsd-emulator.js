#!/usr/bin/env node
// The compiled emulator lives in dist/; `npm install` builds it (the root "prepare" script).
import("../dist/main.js").catch((err) => {
  if (err && err.code === "ERR_MODULE_NOT_FOUND" && String(err.message).includes("dist/main.js")) {
    console.error("rdsd-emulator is not built: run `npm install` (or `npm run build`) in the rdsd checkout.");
    process.exit(1);
  }
  throw err;
});
