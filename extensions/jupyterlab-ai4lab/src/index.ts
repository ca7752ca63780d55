/**
 * jupyterlab-ai4lab: the ai4lab panels in JupyterLab 4. A left-sidebar entry and
 * launcher cards open six panels in the main area; all of them talk to the platform
 * through this session's server extension (`<base>/ai4lab/...`).
 */

import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ILauncher } from '@jupyterlab/launcher';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { Platform } from './api';
import { h } from './dom';
import { Ctx, Panel, PanelName } from './panels/base';
import { DeployPanel } from './panels/deploy';
import { DeploymentsPanel } from './panels/deployments';
import { FlowerPanel } from './panels/flower';
import { MarketplacePanel } from './panels/marketplace';
import { SecretsPanel } from './panels/secrets';
import { StoragePanel } from './panels/storage';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">
<circle cx="6" cy="6" r="3"/><circle cx="18" cy="6" r="3"/><circle cx="12" cy="18" r="3"/>
<path d="M7.5 8l3.2 7.3M16.5 8l-3.2 7.3M9 6h6" stroke="#616161" stroke-width="1.6" fill="none"/></g></svg>`;

export const ai4labIcon = new LabIcon({ name: 'ai4lab:logo', svgstr: ICON_SVG });

export const PANELS: { name: PanelName; label: string; make: (ctx: Ctx) => Panel }[] = [
  { name: 'marketplace', label: 'Marketplace', make: ctx => new MarketplacePanel(ctx) },
  { name: 'deployments', label: 'Deployments & trainings', make: ctx => new DeploymentsPanel(ctx) },
  { name: 'deploy', label: 'Deploy & try', make: ctx => new DeployPanel(ctx) },
  { name: 'flower', label: 'Federated (Flower)', make: ctx => new FlowerPanel(ctx) },
  { name: 'storage', label: 'Storage', make: ctx => new StoragePanel(ctx) },
  { name: 'secrets', label: 'Secrets', make: ctx => new SecretsPanel(ctx) }
];

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyterlab-ai4lab:plugin',
  description: 'ai4lab panels: marketplace, deployments and trainings, deploy and try, Flower, storage, secrets.',
  autoStart: true,
  requires: [ILabShell],
  optional: [ILauncher, ILayoutRestorer],
  activate: (app: JupyterFrontEnd, shell: ILabShell, launcher: ILauncher | null, restorer: ILayoutRestorer | null) => {
    const settings = ServerConnection.makeSettings();
    const api = new Platform((path, init) => ServerConnection.makeRequest(URLExt.join(settings.baseUrl, 'ai4lab', path), init ?? {}, settings));
    const tracker = new WidgetTracker<MainAreaWidget<Panel>>({ namespace: 'ai4lab' });
    const open: Record<string, MainAreaWidget<Panel>> = {};

    const ctx: Ctx = {
      api,
      base: settings.baseUrl,
      open: (name, args) => void app.commands.execute(`ai4lab:open-${name}`, args ?? {}),
      reveal: path => void app.commands.execute('filebrowser:go-to-path', { path }).catch(() => undefined)
    };

    for (const p of PANELS) {
      app.commands.addCommand(`ai4lab:open-${p.name}`, {
        label: p.label,
        caption: `ai4lab: ${p.label}`,
        icon: ai4labIcon,
        execute: args => {
          let w = open[p.name];
          if (!w || w.isDisposed) {
            w = new MainAreaWidget({ content: p.make(ctx) });
            w.id = `ai4lab-${p.name}-area`;
            w.title.label = p.label;
            w.title.icon = ai4labIcon;
            w.title.closable = true;
            open[p.name] = w;
            void tracker.add(w);
            shell.add(w, 'main');
          }
          shell.activateById(w.id);
          w.content.present(args as Record<string, any>);
        }
      });
      launcher?.add({ command: `ai4lab:open-${p.name}`, category: 'ai4lab', rank: PANELS.indexOf(p) });
    }

    const sidebar = new Widget();
    sidebar.id = 'ai4lab-sidebar';
    sidebar.title.icon = ai4labIcon;
    sidebar.title.caption = 'ai4lab';
    sidebar.addClass('ai4lab-sidebar');
    sidebar.node.append(h('h2', { text: 'ai4lab' }),
      ...PANELS.map(p => h('button', { class: 'jp-mod-styled ai4lab-open', 'data-panel': p.name, text: p.label, onclick: () => ctx.open(p.name) })));
    shell.add(sidebar, 'left', { rank: 600 });
    restorer?.add(sidebar, 'ai4lab-sidebar');
  }
};

export default plugin;
