/**
 * Output printers by name, in the manner of llama-bench's `-o csv|json|md|...`: the CLI picks
 * writers from this registry and names files `results.<extension>` / `report.html`.
 *
 * @module
 */
import { Registry } from "../core/registry.ts";
import { rowsToCsv } from "./csv.ts";
import { renderHtml } from "./html.ts";
import { resultsToJson } from "./json.ts";
import { summaryTable } from "./markdown.ts";
import type { ResultsFile } from "../core/row.ts";

/** Renders a whole results file as one document. */
export interface Printer {
  /** Registry name, e.g. `csv`. */
  name: string;
  /** File extension without the dot, e.g. `md`. */
  extension: string;
  render(file: ResultsFile): string;
}

const PRINTERS: Printer[] = [
  { name: "csv", extension: "csv", render: (file) => rowsToCsv(file.rows) },
  { name: "json", extension: "json", render: resultsToJson },
  { name: "html", extension: "html", render: renderHtml },
  { name: "markdown", extension: "md", render: (file) => summaryTable(file.rows) },
];

/** The printers by name: `csv`, `html`, `json`, `markdown`. */
export const printers: Registry<Printer> = new Registry(
  "printer",
  PRINTERS.map((p) => [p.name, p] as const),
);
