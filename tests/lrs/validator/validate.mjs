// Reads a JSON array of xAPI statements on stdin and prints, as JSON, one list of problems per
// statement (an empty list: the statement conforms), found by @learninglocker/xapi-validation.
import { readFileSync } from "node:fs";
import validation from "@learninglocker/xapi-validation";

const validate = validation.default ?? validation;
const statements = JSON.parse(readFileSync(0, "utf8"));
const results = statements.map((statement) =>
  validate(statement).map((warning) => ({
    kind: warning.constructor.name,
    path: (warning.path ?? []).join("."),
    message: String(warning.message ?? ""),
  })),
);
process.stdout.write(JSON.stringify(results));
