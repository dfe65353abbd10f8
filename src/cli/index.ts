#!/usr/bin/env node
import { Command, Option } from 'commander';
import { VERSION } from '../core/version.ts';
import { failWith } from './report.ts';

// Each command's module is imported only when that command runs: `--version` and `--help` then
// load commander alone, and `serve` does not pay for the PKI, mesh and dev tooling.
const gateway = () => import('./gateway-commands.ts');
const pkiCommands = () => import('./pki-commands.ts');

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** The CLI only parses arguments and calls into commands; it holds no gateway logic. */
const program = new Command('egress-gateway')
  .description('mTLS identity-aware egress gateway for Kubernetes service meshes')
  .version(VERSION)
  .showHelpAfterError();

program
  .command('serve')
  .description('start the gateway')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .option('--workers <n>', 'worker processes sharing the listeners (default: config `workers`, 1)')
  .action(async (opts) => (await gateway()).runServe(opts.config, { workers: opts.workers }));

program
  .command('config')
  .description('configuration tools')
  .command('validate')
  .description('validate a configuration file and its certificates, then exit')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .action(async (opts) => (await gateway()).runConfigValidate(opts.config));

program
  .command('policy')
  .description('policy tools')
  .command('check')
  .description('print the decision for an identity and destination; exit 0 allow, 1 deny')
  .requiredOption('-c, --config <file>', 'configuration file (YAML)')
  .requiredOption('--spiffe-id <id>', 'caller SPIFFE ID, e.g. spiffe://cluster.local/ns/bookinfo/sa/productpage')
  .option('--listener <name>', 'listener name (default: the first listener)')
  .option('--dest <host:port>', 'destination (connect mode); omitted for tcp listeners')
  .action(async (opts) => (await gateway()).runPolicyCheck(opts));

const pki = program.command('pki').description('mint and inspect mesh certificates');
pki
  .command('init')
  .description("write a root and an intermediate CA in Istio's cacerts layout")
  .requiredOption('--dir <dir>', 'output directory')
  .option('--trust-domain <td>', 'trust domain', 'cluster.local')
  .addOption(new Option('--key-type <type>', 'key algorithm').choices(['ecdsa', 'rsa']).default('ecdsa'))
  .option('--force', 'replace an existing CA')
  .action(async (opts) => (await pkiCommands()).runPkiInit(opts));
pki
  .command('issue')
  .description('issue an X.509-SVID signed by the CA in --ca-dir')
  .requiredOption('--ca-dir <dir>', "directory in Istio's cacerts layout")
  .requiredOption('--spiffe-id <id>', 'SPIFFE ID for the URI SAN')
  .requiredOption('--out <dir>', 'writes cert.pem (leaf + chain) and key.pem here')
  .option('--dns <name>', 'DNS SAN (repeatable)', collect, [])
  .option('--ip <address>', 'IP SAN (repeatable)', collect, [])
  .option('--ttl <duration>', 'validity, e.g. 24h, 90d', '24h')
  .addOption(new Option('--key-type <type>', 'key algorithm').choices(['ecdsa', 'rsa']).default('ecdsa'))
  .option('--include-root', 'append cert-chain.pem (intermediate + root) instead of the intermediate only')
  .action(async (opts) => (await pkiCommands()).runPkiIssue(opts));
pki
  .command('inspect')
  .description('print identity, validity, SANs and X.509-SVID rule violations of a certificate')
  .argument('<file>', 'PEM file; the first certificate is the leaf, the rest its chain')
  .option('--trust-domain <td>', 'expected trust domain (default: the one in the SPIFFE ID)')
  .option('--anchors <file>', 'also verify the chain against these trust anchors')
  .action(async (file, opts) => (await pkiCommands()).runPkiInspect(file, opts));

program
  .command('mesh')
  .description('service mesh integration')
  .command('manifests')
  .description('print Kubernetes/Istio YAML that registers the gateway in the mesh (kubectl apply -f -)')
  .requiredOption('--name <name>', 'service name, e.g. bigip-proxy-svc')
  .requiredOption('--namespace <ns>', 'namespace of the registration, e.g. bookinfo')
  .requiredOption('--address <ip[,ip...]>', 'gateway IP address(es), one per instance')
  .requiredOption('--port <port>', 'proxy port, e.g. 3128')
  .requiredOption('--service-account <sa>', 'service account in the gateway SVID, e.g. bigip-proxy')
  .addOption(
    new Option(
      '--style <style>',
      'register: Service+Endpoints like istioctl register; workloadentry: WorkloadEntry+ServiceEntry+DestinationRule',
    )
      .choices(['register', 'workloadentry'])
      .default('workloadentry'),
  )
  .option('--trust-domain <td>', 'SPIFFE trust domain', 'cluster.local')
  .option('--host <name>', 'ServiceEntry/DestinationRule host (default <name>.<namespace>.svc.<cluster domain>)')
  .option('--cluster-domain <domain>', 'Kubernetes DNS domain', 'cluster.local')
  .action(async (opts) => (await import('./mesh-commands.ts')).runMeshManifests(opts));

program
  .command('dev')
  .description('development helpers')
  .command('echo-server')
  .description('HTTP target that answers with the address it was reached from (shows the SNAT address)')
  .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8080')
  .action(async (opts) => (await import('./dev-commands.ts')).runDevEchoServer(opts.listen));

program.parseAsync(process.argv).catch(failWith);
