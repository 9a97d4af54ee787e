export async function installServiceCommand(_o: { config?: string; print?: boolean }): Promise<number> { throw new Error("not yet"); }
