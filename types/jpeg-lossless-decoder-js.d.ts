// jpeg-lossless-decoder-js 2.1.2 ships its types outside its package exports; the part medssl uses.
declare module 'jpeg-lossless-decoder-js' {
  export class Decoder {
    decode(buffer: ArrayBuffer, offset: number, length: number, numBytes?: number): Uint8Array | Uint16Array;
    numComp: number;
    precision: number;
    xDim: number;
    yDim: number;
  }
}
