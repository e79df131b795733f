// The part of the WebAssembly JavaScript API medssl uses. Node has it built in, but @types/node 20 does not
// declare it (it lives in TypeScript's DOM library, which a Node project should not load).
declare namespace WebAssembly {
  class Module {
    constructor(bytes: ArrayBufferView | ArrayBuffer);
  }
  class Instance {
    constructor(module: Module, imports?: Record<string, Record<string, unknown>>);
    readonly exports: Record<string, unknown>;
  }
  class Memory {
    readonly buffer: ArrayBuffer;
    grow(pages: number): number;
  }
}
