export async function doctorCommand(_o: { config?: string; json?: boolean }): Promise<number> { throw new Error("not yet"); }
