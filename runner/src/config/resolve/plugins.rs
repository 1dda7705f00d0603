//! `[plugins]`: sources, limits and capabilities.

use super::{BUILTIN_TASK_TYPES, Resolver, Result};
use crate::config::raw::*;
use crate::config::*;

impl Resolver<'_> {
    pub(super) fn plugins(
        &self,
        raw: &IndexMap<String, RawPlugin>,
        base_dir: &Path,
        defaults: &Defaults,
    ) -> Result<IndexMap<String, PluginDecl>> {
        let mut plugins = IndexMap::new();
        for name in crate::builtin::names() {
            plugins.insert(
                name.to_string(),
                PluginDecl {
                    name: name.to_string(),
                    source: PluginSource::Builtin(name.to_string()),
                    sha256: None,
                    capabilities: Capabilities::default(),
                    memory: defaults.memory,
                    timeout: None,
                    output: None,
                    declared_at: None,
                },
            );
        }
        for (name, plugin) in raw {
            let key = format!("plugins.{name}");
            if BUILTIN_TASK_TYPES.contains(&name.as_str()) {
                return Err(self.table_at(
                    "plugins",
                    name,
                    key,
                    format!(
                        "`{name}` is a task type of the runner itself; pick another plugin name"
                    ),
                ));
            }
            let source = match (&plugin.path, &plugin.builtin) {
                (Some(path), None) => {
                    let full = base_dir.join(path.get_ref());
                    if !full.is_file() {
                        return Err(self.at(
                            path,
                            format!("{key}.path"),
                            format!("no component file at `{}`", full.display()),
                        ));
                    }
                    PluginSource::Path(full)
                }
                (None, Some(builtin)) => {
                    if !crate::builtin::names().contains(&builtin.get_ref().as_str()) {
                        return Err(self.at(
                            builtin,
                            format!("{key}.builtin"),
                            format!(
                                "no built-in plugin `{}`; built-in plugins: {}",
                                builtin.get_ref(),
                                crate::builtin::names().join(", ")
                            ),
                        ));
                    }
                    PluginSource::Builtin(builtin.get_ref().clone())
                }
                (Some(path), Some(_)) => {
                    return Err(self.at(path, key, "give either `path` or `builtin`, not both"));
                }
                (None, None) => {
                    return Err(self.table_at(
                        "plugins",
                        name,
                        key,
                        "give the component: `path = \"file.wasm\"` or `builtin = \"name\"`",
                    ));
                }
            };
            let sha256 = match &plugin.sha256 {
                Some(sum) => {
                    let hex = sum.get_ref().to_ascii_lowercase();
                    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(self.at(
                            sum,
                            format!("{key}.sha256"),
                            "expected 64 hexadecimal digits",
                        ));
                    }
                    Some(hex)
                }
                None => None,
            };
            let capabilities = self.capabilities(&plugin.capabilities, &key, base_dir)?;
            let memory = match &plugin.limits.memory {
                Some(m) => self.memory(m, &format!("{key}.limits.memory"))?,
                None => defaults.memory,
            };
            let timeout = plugin
                .limits
                .timeout
                .as_ref()
                .map(|t| self.duration(t, &format!("{key}.limits.timeout")))
                .transpose()?;
            let output = plugin
                .limits
                .output
                .as_ref()
                .map(|o| self.output_limit(o, &format!("{key}.limits.output")))
                .transpose()?;
            let declared_at = plugin
                .path
                .as_ref()
                .or(plugin.builtin.as_ref())
                .map(|s| self.location(s));
            plugins.insert(
                name.clone(),
                PluginDecl {
                    name: name.clone(),
                    source,
                    sha256,
                    capabilities,
                    memory,
                    timeout,
                    output,
                    declared_at,
                },
            );
        }
        Ok(plugins)
    }

    pub(super) fn capabilities(
        &self,
        raw: &RawCapabilities,
        key: &str,
        base_dir: &Path,
    ) -> Result<Capabilities> {
        let mut dirs = Vec::new();
        for (i, dir) in raw.dirs.iter().enumerate() {
            let dir_key = format!("{key}.capabilities.dirs[{i}]");
            let host = base_dir.join(&dir.get_ref().host);
            if !host.is_dir() {
                return Err(self.at(
                    dir,
                    format!("{dir_key}.host"),
                    format!("no directory at `{}`", host.display()),
                ));
            }
            let writable = match dir.get_ref().access.as_deref() {
                None | Some("read-only") => false,
                Some("read-write") => true,
                Some(other) => {
                    return Err(self.at(
                        dir,
                        format!("{dir_key}.access"),
                        format!("unknown access `{other}`; use read-only or read-write"),
                    ));
                }
            };
            let guest = dir
                .get_ref()
                .guest
                .clone()
                .unwrap_or_else(|| dir.get_ref().host.clone());
            dirs.push(DirGrant {
                host,
                guest,
                writable,
            });
        }
        let mut env = Vec::new();
        for (i, name) in raw.env.iter().enumerate() {
            let valid = !name.get_ref().is_empty() && !name.get_ref().contains(['=', '\0']);
            if !valid {
                return Err(self.at(
                    name,
                    format!("{key}.capabilities.env[{i}]"),
                    "not a variable name",
                ));
            }
            env.push(name.get_ref().clone());
        }
        let vars = raw
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Capabilities { dirs, env, vars })
    }
}

/// "unknown task type `x`; ... use one of: ..." suggesting only what fits:
/// declared plugins (their kind is known only once loaded) and the
/// built-ins of the right kind.
pub(super) fn unknown_plugin(
    name: &str,
    what: &str,
    plugins: &IndexMap<String, PluginDecl>,
) -> String {
    use crate::builtin::Kind;
    let fits: &[Kind] = match what {
        "batch type" => &[Kind::Batch],
        "adapter" => &[Kind::Adapter],
        "component" => &[Kind::Script],
        _ => &[Kind::Block, Kind::Script],
    };
    let mut known: Vec<&str> = if what == "task type" {
        BUILTIN_TASK_TYPES.to_vec()
    } else {
        Vec::new()
    };
    for (plugin_name, decl) in plugins {
        let kind = match &decl.source {
            PluginSource::Builtin(builtin) if decl.declared_at.is_none() => {
                crate::builtin::kind(builtin)
            }
            _ => None,
        };
        if kind.is_none_or(|k| fits.contains(&k)) {
            known.push(plugin_name);
        }
    }
    if known.is_empty() {
        return format!("unknown {what} `{name}`; declare it under [plugins.{name}]");
    }
    format!(
        "unknown {what} `{name}`; declare it under [plugins.{name}] or use one of: {}",
        known.join(", ")
    )
}
