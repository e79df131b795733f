import fs from 'node:fs';
import type { Command } from 'commander';

// `medssl decode FILE --npy OUT.npy`: the decode stage on one file, for checking a file or a decoder by hand.
export function register(program: Command): void {
  program
    .command('decode')
    .description('decode one DICOM or NIfTI file: print a summary of its metadata (all of it with --json), optionally write the stored values as .npy')
    .argument('<file>', 'a DICOM (.dcm, .dcm.gz, no extension) or NIfTI (.nii, .nii.gz, .hdr) file')
    .option('--npy <out>', 'write the stored values (before rescale) as a C-order little-endian .npy')
    .option('--json', 'print the whole metadata as one JSON object')
    .addHelpText('after', '\nExamples:\n  $ medssl decode CT.dcm --npy ct.npy\n  $ medssl decode CT.dcm --json\n  {"file":"CT.dcm","format":"dicom","modality":"CT","rows":512,...}')
    .action(async (file: string, opts: { npy?: string; json?: boolean }) => {
      // Imported lazily: `medssl --help` must not load the decode stage, and the codecs load only when needed.
      const { decodeFile } = await import('../../../stages/decode/decode.js');
      const { writeNpy } = await import('../../../stages/source/npy.js');
      const out = await decodeFile(file);
      if (opts.npy) fs.writeFileSync(opts.npy, writeNpy(out.data, out.shape));
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(out.meta)}\n`);
        return;
      }
      // A few lines a person reads; --json has every field.
      const m = out.meta as Record<string, unknown>;
      const pick = (k: string) => (m[k] === undefined || m[k] === null ? null : `${k.padEnd(22)} ${typeof m[k] === 'object' ? JSON.stringify(m[k]) : String(m[k])}`);
      const lines = ['format', 'modality', 'transferSyntax', 'rows', 'cols', 'frames', 'samples', 'photometric', 'bitsAllocated', 'bitsStored', 'dtype', 'spacing', 'rescale', 'window', 'niftiVersion', 'dims', 'pixdim']
        .map(pick).filter((l): l is string => l !== null);
      process.stdout.write(`${file}\n  ${lines.join('\n  ')}\n  stored values ${JSON.stringify(out.shape)} ${out.data.constructor.name}${opts.npy ? `, written to ${opts.npy}` : ''}\n`);
    });
}
