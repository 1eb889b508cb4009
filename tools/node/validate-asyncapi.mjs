// Checks an AsyncAPI document with the official parser, and every message example against
// its message's payload and headers schemas (the parser does not check examples of 3.x
// documents). Prints one JSON report on stdout:
//   {"diagnostics": [{severity, code, message, path}], "examples": [{message, example, part, errors}]}
// (severity: 0 error, 1 warning, 2 info, 3 hint). Exits 1 when the document has an error or
// a warning, or an example does not fit its schema; 2 when it cannot run at all.
//
// Usage: node tools/node/validate-asyncapi.mjs docs/asyncapi.yaml
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Parser } = require("@asyncapi/parser");
const Ajv = require("ajv");
const addFormats = require("ajv-formats");

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate-asyncapi.mjs FILE");
  process.exit(2);
}

const { document, diagnostics } = await new Parser().parse(readFileSync(file, "utf8"));
const report = {
  diagnostics: diagnostics.map((d) => ({
    severity: d.severity,
    code: String(d.code),
    message: d.message,
    path: d.path.join("/"),
  })),
  examples: [],
  checked: 0,
};

if (document) {
  // AsyncAPI schemas are JSON Schema draft-07 plus a few keywords of their own (and the
  // parser's x-parser-* annotations): not strict, so those are ignored.
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const validators = new Map();
  const validate = (schema) => {
    const json = schema.json();
    if (!validators.has(json)) validators.set(json, ajv.compile(json));
    return validators.get(json);
  };
  for (const message of document.components().messages()) {
    const parts = { payload: message.payload(), headers: message.headers() };
    for (const [index, example] of message.examples().all().entries()) {
      const values = { payload: example.payload(), headers: example.headers() };
      for (const part of ["payload", "headers"]) {
        if (values[part] === undefined) continue;
        const name = example.name() ?? String(index);
        if (!parts[part]) {
          report.examples.push({ message: message.id(), example: name, part, errors: ["no schema"] });
          continue;
        }
        const check = validate(parts[part]);
        report.checked += 1;
        if (!check(values[part])) {
          const errors = check.errors.map((e) => `${e.instancePath || "/"} ${e.message}`);
          report.examples.push({ message: message.id(), example: name, part, errors });
        }
      }
    }
  }
}

console.log(JSON.stringify(report, null, 2));
const serious = report.diagnostics.some((d) => d.severity <= 1);
process.exit(!document || serious || report.examples.length ? 1 : 0);
