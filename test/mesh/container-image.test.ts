import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';
import type { JsonDoc } from './helpers/validate-manifests.ts';

/*
 * The Dockerfile cannot be built here (no Docker engine), so this checks what can be checked
 * without one: the stage layout, the user, the entrypoint against the Kubernetes/compose files,
 * the .dockerignore allow-list, that the runtime needs only production dependencies, and that
 * exactly the files the runtime stage copies start the CLI with an unwritable $TMPDIR.
 */
const ROOT = new URL('../../', import.meta.url).pathname;
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const packageJson = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

/** Dockerfile instructions with continuation lines joined and comments dropped. */
function instructions(text: string): Instruction[] {
  const joined = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const [keyword = '', ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}

/** Stages by name, each with its instructions. */
function stages(all: readonly Instruction[]): Map<string, Instruction[]> {
  const out = new Map<string, Instruction[]>();
  let current: Instruction[] | undefined;
  for (const instruction of all) {
    if (instruction.keyword === 'FROM') {
      const name = /\bAS\s+(\S+)/i.exec(instruction.args)?.[1] ?? `stage${out.size}`;
      current = [instruction];
      out.set(name, current);
    } else {
      current?.push(instruction);
    }
  }
  return out;
}

/**
 * Docker's .dockerignore semantics for the patterns used here: patterns in order, the last one
 * that matches decides, `!` re-includes, `**` spans directories, `*` stays within one segment.
 */
function dockerignoreIncludes(patterns: readonly string[], path: string): boolean {
  let included = true;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = (negate ? raw.slice(1) : raw).replace(/^\/+|\/+$/g, '');
    const regex = new RegExp(
      `^${pattern
        .split('/')
        .map((segment) =>
          segment === '**'
            ? '.*'
            : segment
                .replace(/[.+^${}()|[\]\\]/g, '\\$&')
                .replace(/\*/g, '[^/]*')
                .replace(/\?/g, '[^/]'),
        )
        .join('/')
        .replace(/\/\.\*$/, '(/.*)?')
        .replace(/^\.\*\//, '(.*/)?')}(/.*)?$`,
    );
    if (regex.test(path)) included = negate;
  }
  return included;
}

function listFiles(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? listFiles(path, base) : [relative(base, path)];
  });
}

/** Bare package names that src/ loads at run time (type-only imports are erased by tsx). */
function runtimePackages(): Set<string> {
  const packages = new Set<string>();
  for (const file of listFiles(join(ROOT, 'src')).filter((f) => f.endsWith('.ts'))) {
    const source = readFileSync(join(ROOT, 'src', file), 'utf8');
    const specifiers = [
      ...[...source.matchAll(/^\s*(?:import|export)\s+(?!type\s)[^'";]*?\bfrom\s+'([^']+)'/gm)].map((m) => m[1]),
      ...[...source.matchAll(/^\s*import\s+'([^']+)'/gm)].map((m) => m[1]),
      ...[...source.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]),
    ];
    for (const specifier of specifiers) {
      if (!specifier || specifier.startsWith('.') || specifier.startsWith('node:')) continue;
      const parts = specifier.split('/');
      packages.add(specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string));
    }
  }
  return packages;
}

function run(
  command: string,
  args: readonly string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; uid?: number; gid?: number },
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

const all = instructions(dockerfile);
const byStage = stages(all);
const runtime = [...byStage.values()].at(-1) ?? [];
const runtimeArgs = (keyword: string) => runtime.filter((i) => i.keyword === keyword).map((i) => i.args);

describe('container image (Dockerfile, .dockerignore)', () => {
  let dir: string;
  let pki: TestPki;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'egw-image-'));
    pki = await createTestPki();
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    pki.cleanup();
  });

  it('builds in stages from a slim Node LTS image, type-checks, and runs as a numeric non-root user', () => {
    assert.ok(byStage.size >= 2, 'multi-stage');
    const nodeVersion = /^ARG NODE_VERSION=(\d+)$/m.exec(dockerfile)?.[1];
    assert.ok(
      nodeVersion && Number(nodeVersion) % 2 === 0 && Number(nodeVersion) >= 20,
      `Node ${nodeVersion}: LTS lines are even-numbered`,
    );
    for (const stage of byStage.values()) assert.match(stage[0]?.args ?? '', /^node:\$\{NODE_VERSION\}-\w+-slim\b/);
    assert.ok(
      [...byStage.values()].some((stage) => stage.some((i) => i.keyword === 'RUN' && /tsc .*--noEmit/.test(i.args))),
      'a stage type-checks the sources',
    );
    assert.ok(
      runtimeArgs('COPY').some((a) => /^--from=check\s+\/app\/src\s/.test(a)),
      'the runtime takes src/ from the checked stage, so BuildKit cannot skip the check',
    );
    const depsRun =
      byStage
        .get('deps')
        ?.filter((i) => i.keyword === 'RUN')
        .map((i) => i.args) ?? [];
    assert.ok(
      depsRun.some((a) => /npm ci --omit=dev/.test(a)),
      'production dependencies only in the runtime',
    );
    const user = runtimeArgs('USER').at(-1) ?? '';
    assert.match(user, /^\d+(:\d+)?$/, 'numeric, so Kubernetes can verify runAsNonRoot');
    assert.notEqual(Number(user.split(':')[0]), 0);
    assert.match(runtimeArgs('ENV').join(' '), /TSX_DISABLE_CACHE=1/);
  });

  it('starts the gateway the way Kubernetes and docker-compose expect', () => {
    const entrypoint = JSON.parse(runtimeArgs('ENTRYPOINT').at(-1) ?? '[]');
    const cmd = JSON.parse(runtimeArgs('CMD').at(-1) ?? '[]');
    assert.deepEqual(entrypoint, ['node', 'bin/egress-gateway.js']);
    assert.deepEqual(cmd, ['serve', '--config', '/etc/egress-gateway/gateway.yaml']);
    const deployment = parse(readFileSync(join(ROOT, 'deploy/kubernetes/deployment.yaml'), 'utf8')) as JsonDoc;
    const podSecurity = deployment.spec.template.spec.securityContext;
    const user = (runtimeArgs('USER').at(-1) ?? '').split(':');
    assert.equal(String(podSecurity.runAsUser), user[0]);
    assert.equal(String(podSecurity.runAsGroup), user[1]);
    assert.deepEqual(deployment.spec.template.spec.containers[0].args, cmd);
    const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as JsonDoc;
    assert.equal(compose.services.gateway.user, user.join(':'));
    assert.deepEqual(compose.services.gateway.command, cmd);
    assert.match(runtimeArgs('EXPOSE').join(' '), /\b9901\b/);
  });

  it('.dockerignore lets in only sources and manifests: no keys, no node_modules, no .git', () => {
    const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const path of [
      'certs/dev/ca-key.pem',
      'certs/dev/gateway/key.pem',
      'node_modules/yaml/package.json',
      '.git/config',
      'test/mesh/compose-demo.test.ts',
      'deploy/kubernetes/deployment.yaml',
      'docs/istio.md',
    ]) {
      assert.equal(dockerignoreIncludes(patterns, path), false, `${path} must stay out of the build context`);
    }
    for (const path of [
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'bin/egress-gateway.js',
      'src/main.ts',
      'src/cli/index.ts',
    ]) {
      assert.equal(dockerignoreIncludes(patterns, path), true, `${path} is needed by the build`);
    }
    for (const copy of all.filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from'))) {
      const sources = copy.args.split(/\s+/).slice(0, -1);
      for (const source of sources) {
        statSync(join(ROOT, source)); // throws if the COPY source does not exist
        assert.ok(dockerignoreIncludes(patterns, source), `COPY ${source} is excluded by .dockerignore`);
      }
    }
  });

  it('everything src/ imports at run time is a production dependency (npm ci --omit=dev installs it)', () => {
    const dependencies = new Set(Object.keys(packageJson.dependencies ?? {}));
    const used = runtimePackages();
    assert.ok(used.has('yaml') && used.has('zod'), [...used].join(', '));
    for (const name of used)
      assert.ok(dependencies.has(name), `src imports ${name} at run time, but it is not in "dependencies"`);
  });

  it("the runtime stage's files start the CLI as the image user with an unwritable $TMPDIR (read-only root filesystem)", async () => {
    // Lay out /app the way the runtime stage does: package.json, bin/, src/ and node_modules.
    const app = join(dir, 'app');
    mkdirSync(app);
    cpSync(join(ROOT, 'package.json'), join(app, 'package.json'));
    cpSync(join(ROOT, 'bin'), join(app, 'bin'), { recursive: true });
    cpSync(join(ROOT, 'src'), join(app, 'src'), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'));
    const readOnlyTmp = join(dir, 'read-only-tmp');
    mkdirSync(readOnlyTmp);
    chmodSync(readOnlyTmp, 0o555);
    // The compose gateway config, with container paths and addresses mapped to loopback and this run's PKI.
    const config = parse(readFileSync(join(ROOT, 'deploy/compose/gateway.yaml'), 'utf8')) as JsonDoc;
    config.identity = {
      trustDomain: 'cluster.local',
      trustAnchors: pki.rootPath,
      cert: pki.gateway.certPath,
      key: pki.gateway.keyPath,
    };
    config.listeners = config.listeners.map((l: JsonDoc) => ({
      ...l,
      listen: '127.0.0.1:0',
      snat: '127.0.0.2',
      upstream: '127.0.0.1:8888',
    }));
    config.audit = { sinks: [{ type: 'stdout', format: 'ecs' }] };
    const configPath = join(dir, 'gateway.yaml');
    writeFileSync(configPath, stringify(config));
    for (const path of [dir, app, configPath, pki.dir, pki.rootPath, pki.gateway.certPath, pki.gateway.keyPath])
      chmodSync(path, statSync(path).isDirectory() ? 0o755 : 0o644);
    // As root, drop to the image's user so the read-only $TMPDIR is really unwritable.
    const [uid, gid] = (runtimeArgs('USER').at(-1) ?? '1000:1000').split(':').map(Number);
    const asImageUser = process.getuid?.() === 0 ? { uid, gid } : {};
    const env = {
      PATH: process.env.PATH,
      HOME: dir,
      TMPDIR: readOnlyTmp,
      NODE_ENV: 'production',
      TSX_DISABLE_CACHE: '1',
    };
    const validate = await run(
      process.execPath,
      ['bin/egress-gateway.js', 'config', 'validate', '--config', configPath],
      { cwd: app, env, ...asImageUser },
    );
    assert.equal(validate.code, 0, validate.output);
    assert.match(validate.output, /valid \(1 listeners/);
    // Why the image sets TSX_DISABLE_CACHE: without it tsx tries to create its cache in $TMPDIR.
    const { TSX_DISABLE_CACHE: _unused, ...withCache } = env;
    const cached = await run(process.execPath, ['bin/egress-gateway.js', '--version'], {
      cwd: app,
      env: withCache,
      ...asImageUser,
    });
    assert.notEqual(cached.code, 0);
    assert.match(cached.output, /EACCES/);
  });
});
