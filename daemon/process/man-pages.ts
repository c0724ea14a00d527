/** The two manual pages, by file name (scripts/man.mjs writes them to docs/man/); here at the process edge because it loads both programs. */
import { metadProgram } from '../cli.js';
import { VERSION } from '../version.js';
import { manPage } from '../../cli/man.js';
import { metadctlProgram } from '../../cli/metadctl.js';

export function manPages(): Record<string, string> {
  return {
    'metad.8': manPage(metadProgram(), { section: 8, version: VERSION, seeAlso: ['metadctl(8)', 'systemd.service(5)'] }),
    'metadctl.8': manPage(metadctlProgram(), { section: 8, version: VERSION, seeAlso: ['metad(8)'] }),
  };
}
