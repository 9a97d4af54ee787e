/**
 * Last-resort cleanup when a test process exits without calling stop()/cleanup():
 * the handlers run synchronously on process exit (a killed process gets none).
 */
const handlers = new Set<() => void>();
let installed = false;

export function onProcessExit(handler: () => void): () => void {
  if (!installed) {
    installed = true;
    process.once("exit", () => {
      for (const run of handlers) {
        try {
          run();
        } catch {
          // best effort: keep going with the others
        }
      }
    });
  }
  handlers.add(handler);
  return () => handlers.delete(handler);
}
