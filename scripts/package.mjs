#!/usr/bin/env node
// `npm run package`: builds metad_<version>_<arch>.deb with dpkg-deb from this checkout's build
// (dist/, which `npm run package` compiles first) and its production dependencies as node_modules
// holds them after `npm ci` (no network). The package's own files (control, maintainer scripts,
// sysusers.d, tmpfiles.d) are in packaging/deb/; what goes where is docs/operations.md, "The
// Debian package". test/integration/deb-package.test.ts builds, lints, installs, upgrades and
// purges it under a real systemd.
//
//   node scripts/package.mjs [--out DIR] [--version VERSION]
//
// --out: where the .deb goes (default: the checkout). --version: the package version (default:
// package.json's; the test builds a second version to upgrade to). Prints the .deb's path.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { parseArgs } from 'node:util';

const root = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const { values } = parseArgs({
  options: { out: { type: 'string', default: root }, version: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
if (values.help) {
  process.stdout.write(
    'usage: node scripts/package.mjs [--out DIR] [--version VERSION]\n  builds metad_<version>_<arch>.deb from dist/ (run `npm run build` first; `npm run package` does)\n',
  );
  process.exit(0);
}
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const version = values.version ?? pkg.version;
if (!/^[0-9][A-Za-z0-9.+~-]*$/.test(version)) throw new Error(`not a Debian version: ${version}`);
for (const d of ['daemon', 'routes', 'cli', 'appliance'])
  if (!existsSync(join(root, 'dist', d))) throw new Error(`dist/${d} is missing: run \`npm run build\` first`);
const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();

const stage = mkdtempSync(join(tmpdir(), 'metad-deb-'));
try {
  const at = (...p) => join(stage, ...p);
  const lib = at('usr/lib/metad');
  const copy = (from, to, filter) => cpSync(join(root, from), to, { recursive: true, filter, dereference: false });

  // The program: compiled code (no source maps: their sources are not shipped), the appliance's
  // build script and agent, and a package.json that makes node read dist/ as ES modules.
  for (const d of ['daemon', 'routes', 'cli', 'appliance']) copy(`dist/${d}`, join(lib, 'dist', d), (src) => !src.endsWith('.map'));
  for (const f of ['build.sh', 'build-lib.sh', 'build-debian.sh', 'install-image.sh', 'agent', 'README.md'])
    copy(`appliance/${f}`, join(lib, 'appliance', f));
  // Ganeti's comm NIC hook, for /etc/ganeti/kvm-ifup-os (docs/ganeti.md, "The comm NIC hook").
  copy('ganeti/kvm-ifup-os', join(lib, 'ganeti', 'kvm-ifup-os'));
  // The stand-in for /usr/sbin/ganeti-metad (docs/ganeti.md, "Ganeti never starts ganeti-metad").
  copy('ganeti/ganeti-metad', join(lib, 'ganeti', 'ganeti-metad'));
  writeFileSync(
    join(lib, 'package.json'),
    `${JSON.stringify({ name: pkg.name, version, description: pkg.description, license: pkg.license, private: true, type: 'module', dependencies: pkg.dependencies, optionalDependencies: pkg.optionalDependencies }, null, 2)}\n`,
  );

  // Production dependencies, as npm resolved them, minus what is never loaded at run time (each
  // package once; its nested node_modules are listed, and copied, as packages of their own).
  const prod = runtimeDependencies();
  for (const dir of prod) {
    const rel = relative(root, dir);
    cpSync(dir, join(lib, rel), {
      recursive: true,
      // Not its nested node_modules (listed, and copied, as packages of their own), nor a native
      // addon's build intermediates and sources: of build/ only build/Release/*.node.
      filter: (src) => {
        const inner = relative(dir, src);
        if (/(^|\/)node_modules(\/|$)/.test(inner)) return false;
        // Dotfiles (.npmignore, .eslintrc, .gitattributes, .github/) and HTML docs (pino's loads
        // scripts from CDNs) and source maps (of sources not shipped) are nothing node loads.
        const base = inner.split('/').pop() ?? '';
        if (base.startsWith('.') || base.endsWith('.html') || base.endsWith('.map')) return false;
        // Nor their READMEs and changelogs (licenses stay, beside the code they cover).
        if (/\.(md|markdown)$/i.test(base) && !/^licen[cs]e/i.test(base)) return false;
        if (inner === 'build' || inner === 'build/Release') return true;
        if (inner.startsWith('build/')) return /^build\/Release\/[^/]+\.node$/.test(inner);
        return true;
      },
    });
  }

  mkdirSync(at('usr/bin'), { recursive: true });
  symlinkSync('../lib/metad/dist/daemon/cli.js', at('usr/bin/metad'));
  symlinkSync('../lib/metad/dist/cli/metadctl.js', at('usr/bin/metadctl'));

  // systemd: the unit (its documentation where this package puts the docs), the user, the dirs.
  const unit = readFileSync(join(root, 'systemd/metad.service'), 'utf8')
    .replace(/^Documentation=.*$/m, 'Documentation=man:metad(8) file:///usr/share/doc/metad/operations.md')
    .replace(/^# `npm install -g`.*\n/m, '');
  mkdirSync(at('lib/systemd/system'), { recursive: true });
  writeFileSync(at('lib/systemd/system/metad.service'), unit);
  mkdirSync(at('usr/lib/sysusers.d'), { recursive: true });
  cpSync(join(root, 'packaging/deb/sysusers.conf'), at('usr/lib/sysusers.d/metad.conf'));
  mkdirSync(at('usr/lib/tmpfiles.d'), { recursive: true });
  cpSync(join(root, 'packaging/deb/tmpfiles.conf'), at('usr/lib/tmpfiles.d/metad.conf'));
  mkdirSync(at('etc/metad'), { recursive: true });
  cpSync(join(root, 'systemd/config.yaml'), at('etc/metad/config.yaml'));

  // Docs, examples (the unit's drop-ins and metad's own libvirtd), man pages, copyright, changelog.
  const doc = at('usr/share/doc/metad');
  mkdirSync(doc, { recursive: true });
  for (const f of readdirSync(join(root, 'docs')))
    if (f.endsWith('.md') || f.endsWith('.json')) cpSync(join(root, 'docs', f), join(doc, f));
  const examples = join(doc, 'examples');
  for (const f of ['install-appliances.conf', 'metad-libvirtd.service', 'libvirt']) copy(`systemd/${f}`, join(examples, f));
  writeFileSync(join(doc, 'copyright'), copyright(pkg));
  writeFileSync(join(doc, 'changelog.gz'), gzipSync(changelog(version), { level: 9 }));
  mkdirSync(at('usr/share/man/man8'), { recursive: true });
  for (const f of ['metad.8', 'metadctl.8'])
    writeFileSync(at('usr/share/man/man8', `${f}.gz`), gzipSync(readFileSync(join(root, 'docs/man', f)), { level: 9 }));

  // Modes as Debian wants them: directories 0755, files 0644, programs 0755.
  normalize(stage);
  for (const x of [
    'usr/lib/metad/dist/daemon/cli.js',
    'usr/lib/metad/dist/cli/metadctl.js',
    'usr/lib/metad/appliance/build.sh',
    'usr/lib/metad/appliance/build-debian.sh',
    'usr/lib/metad/appliance/install-image.sh',
    'usr/lib/metad/ganeti/kvm-ifup-os',
    'usr/lib/metad/ganeti/ganeti-metad',
  ])
    chmodSync(at(x), 0o755);
  // The agent's files as the appliance has them: scripts executable, what is sourced or read not.
  for (const f of readdirSync(join(lib, 'appliance/agent'))) {
    const p = join(lib, 'appliance/agent', f);
    chmodSync(p, readFileSync(p, 'latin1').startsWith('#!') ? 0o755 : 0o644);
  }
  // Native addons: shared objects, stripped, not executable; what they link decides Depends.
  const addons = [];
  walk(lib, (p, st) => st.isFile() && p.endsWith('.node') && addons.push(p));
  for (const p of addons) {
    execFileSync('strip', ['--strip-unneeded', '--remove-section=.comment', '--remove-section=.note', p]);
    chmodSync(p, 0o644);
  }
  const shlibs = sharedLibraryDepends(addons);
  mkdirSync(at('usr/share/lintian/overrides'), { recursive: true });
  cpSync(join(root, 'packaging/deb/lintian-overrides'), at('usr/share/lintian/overrides/metad'));
  chmodSync(at('usr/share/lintian/overrides/metad'), 0o644);

  // DEBIAN/: control (with the installed size), conffiles, maintainer scripts, md5sums.
  const md5 = [];
  let bytes = 0;
  walk(stage, (p, st) => {
    bytes += st.isFile() ? st.size : 0;
    if (st.isFile()) md5.push(`${createHash('md5').update(readFileSync(p)).digest('hex')}  ${relative(stage, p)}`);
  });
  const ctl = at('DEBIAN');
  mkdirSync(ctl, { mode: 0o755 });
  const control = readFileSync(join(root, 'packaging/deb/control.in'), 'utf8')
    .replace('@VERSION@', version)
    .replace('@ARCH@', arch)
    .replace('@INSTALLED_SIZE@', String(Math.ceil(bytes / 1024)))
    .replace('@SHLIBS_DEPENDS@', shlibs.depends.map((d) => `, ${d}`).join(''))
    .replace('@SHLIBS_RECOMMENDS@', shlibs.recommends.map((d) => `, ${d}`).join(''));
  writeFileSync(join(ctl, 'control'), control, { mode: 0o644 });
  writeFileSync(join(ctl, 'conffiles'), '/etc/metad/config.yaml\n', { mode: 0o644 });
  writeFileSync(join(ctl, 'md5sums'), `${md5.filter((l) => !l.endsWith('  etc/metad/config.yaml')).join('\n')}\n`, { mode: 0o644 });
  for (const s of ['postinst', 'prerm', 'postrm']) {
    cpSync(join(root, 'packaging/deb', s), join(ctl, s));
    chmodSync(join(ctl, s), 0o755);
  }

  mkdirSync(values.out, { recursive: true });
  const deb = join(values.out, `metad_${version}_${arch}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb], { stdio: ['ignore', 'ignore', 'inherit'] });
  process.stdout.write(`${deb}\n`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}

/**
 * The directories of the production dependencies that metad can load: npm's tree without the
 * subtrees of NOT_LOADED. @unraid/libvirt lists its build tools as dependencies (tsx and esbuild,
 * node-pre-gyp and its tar, node-addon-api's headers: 30 MiB that its dist/ never imports; it
 * loads only `bindings` and xml2js), and tar-stream lists bare-fs, which only the Bare runtime
 * resolves (its package.json "imports": node takes node:fs).
 */
function runtimeDependencies() {
  const NOT_LOADED = new Set(['tsx', '@mapbox/node-pre-gyp', 'node-addon-api', 'bare-fs']);
  const out = new Set();
  // Node's own lookup: node_modules/<name> in the requiring package's directory, then upwards.
  const find = (name, from) => {
    for (let d = from; d.startsWith(root); d = dirname(d)) {
      const dir = join(d, 'node_modules', name);
      if (existsSync(join(dir, 'package.json'))) return dir;
    }
    return undefined;
  };
  const visit = (dir, optional) => {
    const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    for (const [deps, opt] of [
      [p.dependencies, false],
      [p.optionalDependencies, true],
    ]) {
      for (const name of Object.keys(deps ?? {})) {
        if (NOT_LOADED.has(name)) continue;
        const at = find(name, dir);
        if (at === undefined) {
          if (opt || optional) continue; // an optional dependency npm did not install here
          throw new Error(`${name} (needed by ${relative(root, dir) || 'metad'}) is not in node_modules: run \`npm ci\``);
        }
        if (out.has(at)) continue;
        out.add(at);
        visit(at, opt);
      }
    }
  };
  visit(root, false);
  return [...out].sort();
}

/**
 * dpkg-shlibdeps on the native addons: the C and C++ runtimes go to Depends; libvirt0 (only the
 * optional libvirt binding links it: without it installs are unavailable, the rest runs) to
 * Recommends.
 */
function sharedLibraryDepends(files) {
  if (files.length === 0) return { depends: [], recommends: [] };
  const dir = mkdtempSync(join(tmpdir(), 'metad-shlibs-'));
  try {
    mkdirSync(join(dir, 'debian'));
    writeFileSync(join(dir, 'debian/control'), 'Source: metad\n\nPackage: metad\nArchitecture: any\n');
    const outText = execFileSync('dpkg-shlibdeps', ['-O', '--warnings=0', '-e', ...files], {
      cwd: dir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const list = (outText.match(/^shlibs:Depends=(.*)$/m)?.[1] ?? '')
      .split(',')
      .map((d) => d.trim())
      .filter(Boolean);
    return { depends: list.filter((d) => !d.startsWith('libvirt')), recommends: list.filter((d) => d.startsWith('libvirt')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function walk(dir, fn) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    const st = lstatSync(p);
    fn(p, st);
    if (st.isDirectory()) walk(p, fn);
  }
}

function normalize(dir) {
  chmodSync(dir, 0o755);
  walk(dir, (p, st) => {
    if (st.isSymbolicLink()) return;
    chmodSync(p, st.isDirectory() ? 0o755 : st.mode & 0o111 ? 0o755 : 0o644);
  });
}

function copyright(p) {
  return `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ${p.name}
Source: https://metad.example.org/

Files: *
Copyright: 2026 metad developers
License: Apache-2.0

Files: usr/lib/metad/node_modules/*
Copyright: the authors of each package (see its package.json and license file)
License: various
 Each package's license is in its directory (LICENSE, package.json "license").

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
`;
}

function changelog(v) {
  // A native package: the changelog is upstream's, one entry per version built.
  const date = new Date(Number(process.env.SOURCE_DATE_EPOCH ?? 0) * 1000 || Date.now()).toUTCString().replace('GMT', '+0000');
  return `metad (${v}) unstable; urgency=medium\n\n  * Release ${v} (docs/operations.md: upgrade notes).\n\n -- metad maintainers <metad@lists.example.org>  ${date}\n`;
}
