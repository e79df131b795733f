// dcmjs 0.51.1 ships no type definitions. medssl's decode stage reads DICOM with its own bounded parser
// (stages/decode/dicom.ts); this declaration lets tests and tools use dcmjs to write DICOM files.
declare module 'dcmjs' {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const dcmjs: any;
  export default dcmjs;
}
