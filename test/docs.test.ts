import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// The documentation a user reads from a clone or an installed package: every path it names is in the repository.

const REPO = fileURLToPath(new URL("..", import.meta.url));

async function markdownFiles(): Promise<string[]> {
  const packages = await readdir(join(REPO, "packages"));
  return ["README.md", "config/README.md", ...packages.map((p) => `packages/${p}/README.md`)].filter((f) => existsSync(join(REPO, f)));
}

/** Relative link targets of a markdown text: `[text](target)`, anchors and URLs left out. */
function relativeLinks(text: string): string[] {
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((t) => !/^([a-z]+:|#)/i.test(t)).map((t) => t.split("#")[0]!);
}

describe("documentation", () => {
  it("links only to files that exist inside the repository, and names no path outside it", async () => {
    const files = await markdownFiles();
    expect(files).toContain("README.md");
    for (const file of files) {
      const text = await readFile(join(REPO, file), "utf8");
      for (const link of relativeLinks(text)) {
        const target = resolve(dirname(join(REPO, file)), link);
        expect(relative(REPO, target).startsWith(".."), `${file} links outside the repository: ${link}`).toBe(false);
        expect(existsSync(target), `${file} links to a missing file: ${link}`).toBe(true);
      }
      // Relative paths in code spans that climb out of the repository (the project's notes live outside it).
      const outside = [...text.matchAll(/`([^`\s]*)`/g)]
        .map((m) => m[1]!)
        .filter((p) => /(^|\/)shared\/docs\//.test(p) || (p.startsWith(".") && relative(REPO, resolve(dirname(join(REPO, file)), p)).startsWith("..")));
      expect(outside, `${file} names paths outside the repository`).toEqual([]);
    }
  });

  it("says the RDS CA bundle (tls.ca: rds) is downloaded at first use, not shipped", async () => {
    for (const file of ["README.md", "config/README.md"]) {
      const text = await readFile(join(REPO, file), "utf8");
      expect(text, file).toMatch(/not (ship|shipped)\b/);
      expect(text, file).toContain("https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem");
      expect(text, file).not.toMatch(/bundle shipped with rdsd/);
    }
  });
});
