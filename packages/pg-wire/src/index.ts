export * from "./codes.js";
export * from "./startup.js";
export * from "./backend.js";
export * from "./scram.js";
export * from "./message-boundaries.js";
