// A small cursor over the YAML AST that turns shapes into values and records an issue with
// file position and key path for everything that does not fit. Readers return undefined on a
// problem (after recording it) so that validation goes on and every issue in a file is found.

import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from "yaml";
import type { ConfigIssue } from "./issues.js";
import { closestWord } from "./suggest.js";

/** A value position in the tree: a node, or null where YAML had no node at all. */
export type ValueNode = Node | null;

/** One key of a mapping, with the nodes needed to read and to point at it. */
export interface Entry {
  /** The key as written. */
  name: string;
  /** Full dotted key path, e.g. "targets.orders-dev.listen". */
  path: string;
  /** The key's node: where "unknown"/"duplicate" problems point. */
  keyNode: Node;
  /** The value's node: where problems with the value point. */
  value: ValueNode;
}

/** A mapping that passed the shape checks: known keys only, each once. */
export interface MapView {
  /** Key path of the mapping itself ("" for the document root). */
  path: string;
  /** Where to point when a required key is missing (usually the mapping's own key). */
  anchor: ValueNode;
  /** The entries by key, first occurrence only. */
  entries: Map<string, Entry>;
}

/** Known keys of a mapping ("any" for user-chosen names), and hints for keys that belong elsewhere. */
export interface MapShape {
  known: readonly string[] | "any";
  /** Key -> why it is not allowed here, used instead of "unknown key". */
  misplaced?: Readonly<Record<string, string>>;
}

/** Joins a parent key path and a child key. */
export function childPath(parent: string, name: string): string {
  return parent === "" ? name : `${parent}.${name}`;
}

export class YamlReader {
  /** Everything found so far. */
  readonly issues: ConfigIssue[] = [];

  constructor(
    private readonly document: Document,
    private readonly lines: LineCounter,
  ) {}

  /** Follows an alias (`*name`) to the node its anchor marks; other nodes pass through. */
  resolve(value: ValueNode): ValueNode {
    return isAlias(value) ? (value.resolve(this.document) ?? null) : value;
  }

  /** A short description of what was found, for "got ..." (never used for secret-bearing keys). */
  describe(value: ValueNode): string {
    const node = this.resolve(value);
    if (node === null || (isScalar(node) && node.value === null)) return "nothing";
    if (isMap(node)) return "a mapping";
    if (isSeq(node)) return "a list";
    if (isScalar(node)) {
      if (typeof node.value === "string") {
        const text = node.value.length > 60 ? `${node.value.slice(0, 57)}...` : node.value;
        return JSON.stringify(text);
      }
      return node.source ?? String(node.value);
    }
    return "something else";
  }

  /** Records a problem at `node` (or without a position when there is none). */
  report(node: ValueNode, key: string, message: string): void {
    const offset = node?.range?.[0];
    if (offset === undefined) {
      this.issues.push({ key, message });
      return;
    }
    const { line, col } = this.lines.linePos(offset);
    this.issues.push({ line, column: col, key, message });
  }

  /** 1-based line of a node, for messages that refer to another place in the file. */
  lineOf(node: ValueNode): number | undefined {
    const offset = node?.range?.[0];
    return offset === undefined ? undefined : this.lines.linePos(offset).line;
  }

  /** Reads a mapping: refuses other shapes, non-scalar keys, duplicate keys and unknown keys. */
  map(value: ValueNode, path: string, shape: MapShape, expected: string, anchor: ValueNode = value): MapView | undefined {
    const node = this.resolve(value);
    if (!isMap(node)) {
      this.report(value, path, `expected ${expected}, got ${this.describe(value)}`);
      return undefined;
    }
    const entries = new Map<string, Entry>();
    for (const pair of node.items) {
      const keyNode = pair.key as ValueNode;
      const name = keyName(this.resolve(keyNode));
      if (name === undefined || keyNode === null) {
        this.report(keyNode ?? value, path, `expected a plain key name, got ${this.describe(keyNode)}`);
        continue;
      }
      const entryPath = childPath(path, name);
      const earlier = entries.get(name);
      if (earlier !== undefined) {
        this.report(keyNode, entryPath, `duplicate key (first given on line ${this.lineOf(earlier.keyNode) ?? "?"})`);
        continue;
      }
      if (shape.known !== "any" && !shape.known.includes(name)) {
        this.report(keyNode, entryPath, unknownKeyMessage(name, shape));
        continue;
      }
      entries.set(name, { name, path: entryPath, keyNode, value: pair.value as ValueNode });
    }
    return { path, anchor, entries };
  }

  /** The entry for a key that must be present; records "missing" at the map's anchor otherwise. */
  required(view: MapView, name: string, expected: string): Entry | undefined {
    const entry = view.entries.get(name);
    if (entry === undefined) this.report(view.anchor, childPath(view.path, name), `missing: expected ${expected}`);
    return entry;
  }

  /** A non-empty string. Numbers are taken as written ("2024" for `database: 2024`). */
  text(entry: Entry, expected: string, options: { secret?: boolean } = {}): string | undefined {
    const node = this.resolve(entry.value);
    if (isScalar(node)) {
      if (typeof node.value === "string" && node.value !== "") return node.value;
      if (typeof node.value === "number") return node.source ?? String(node.value);
    }
    this.report(entry.value, entry.path, options.secret === true ? `expected ${expected}` : `expected ${expected}, got ${this.describe(entry.value)}`);
    return undefined;
  }

  /** A whole number in [min, max], given as a YAML number. */
  integer(entry: Entry, min: number, max: number, expected: string): number | undefined {
    const node = this.resolve(entry.value);
    if (isScalar(node) && typeof node.value === "number" && Number.isInteger(node.value) && node.value >= min && node.value <= max) {
      return node.value;
    }
    this.report(entry.value, entry.path, `expected ${expected}, got ${this.describe(entry.value)}`);
    return undefined;
  }

  /** true or false. */
  boolean(entry: Entry): boolean | undefined {
    const node = this.resolve(entry.value);
    if (isScalar(node) && typeof node.value === "boolean") return node.value;
    this.report(entry.value, entry.path, `expected true or false, got ${this.describe(entry.value)}`);
    return undefined;
  }

  /** One of a fixed set of words, with a "did you mean" for near misses. */
  oneOf<T extends string>(entry: Entry, choices: readonly T[]): T | undefined {
    const node = this.resolve(entry.value);
    if (isScalar(node) && typeof node.value === "string" && (choices as readonly string[]).includes(node.value)) {
      return node.value as T;
    }
    const guess = isScalar(node) && typeof node.value === "string" ? closestWord(node.value, choices) : undefined;
    const hint = guess === undefined ? "" : ` (did you mean "${guess}"?)`;
    this.report(entry.value, entry.path, `expected one of ${choices.join(", ")}, got ${this.describe(entry.value)}${hint}`);
    return undefined;
  }
}

/** The scalar text of a key, or undefined for keys that are not plain scalars. */
function keyName(key: ValueNode): string | undefined {
  if (!isScalar(key)) return undefined;
  if (typeof key.value === "string") return key.value;
  if (typeof key.value === "number") return key.source ?? String(key.value);
  return undefined;
}

function unknownKeyMessage(name: string, shape: MapShape): string {
  const misplaced = shape.misplaced?.[name];
  if (misplaced !== undefined) return misplaced;
  const known = shape.known === "any" ? [] : shape.known;
  const guess = closestWord(name, known);
  if (guess !== undefined) return `unknown key (did you mean "${guess}"?)`;
  return `unknown key (expected one of: ${known.join(", ")})`;
}
