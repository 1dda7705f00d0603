//! Which world and `runner:plugin` version a component targets, and whether
//! this runner can load it: read from the WIT a component carries
//! (`wit-component` decodes it) and compared with the versions this runner
//! speaks (`wit-parser` reads their WIT files).
//!
//! ## What is compared
//! - The exports name the world: `runner:plugin/block` → `block-plugin`,
//!   `batch` → `batch-plugin`, `agent-adapter` → `agent-plugin` (with
//!   `approvals`: `approving-agent-plugin`), `wasi:cli/run` → a script.
//! - Each export the world has must be there, with every function of the
//!   same signature. Types are compared by structure (record fields, enum
//!   cases, variant payloads), as the component model links them.
//! - Each import must be one the runner provides: `runner:plugin/host` or
//!   `runner:plugin/types` of a version it loads, with functions it has, or a
//!   WASI 0.2 interface (`wasi:cli`, `clocks`, `filesystem`, `io`, `random`,
//!   `sockets`).
//!
//! A mismatch names the import or export and shows both signatures.

use std::fmt;
use wit_component::DecodedWasm;
use wit_parser::{
    Function, Handle, InterfaceId, PackageId, Resolve, Type, TypeDefKind, WorldId, WorldItem,
    WorldKey,
};

/// The WIT of every `runner:plugin` version this runner loads, newest first.
pub const VERSIONS: &[(&str, &str)] = &[
    ("0.2.0", include_str!("../../../wit/plugin.wit")),
    ("0.1.0", include_str!("../../../wit/0.1.0/plugin.wit")),
];

/// The WASI packages the runner links (wasmtime-wasi, WASI 0.2).
const WASI_PACKAGES: &[&str] = &[
    "wasi:cli",
    "wasi:clocks",
    "wasi:filesystem",
    "wasi:io",
    "wasi:random",
    "wasi:sockets",
];

/// The `runner:plugin` interfaces the host provides to plugins.
const HOST_INTERFACES: &[&str] = &["host", "types"];

/// What a component targets and what does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `block-plugin`, `wasi:cli/command`, ...; none when no world fits.
    pub world: Option<String>,
    /// The package of that world: `runner:plugin@0.1.0`, `wasi:cli@0.2.3`.
    pub package: Option<String>,
    /// Everything that stops the runner from loading it; empty when it can.
    pub problems: Vec<Problem>,
}

/// One import or export that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    /// The signature this runner has, when it has one.
    pub expected: Option<String>,
    /// The signature the component has, when it has one.
    pub found: Option<String>,
}

impl Problem {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            expected: None,
            found: None,
        }
    }

    fn expected(mut self, signature: impl Into<String>) -> Self {
        self.expected = Some(signature.into());
        self
    }

    fn found(mut self, signature: impl Into<String>) -> Self {
        self.found = Some(signature.into());
        self
    }
}

/// A file that is no component at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("not a WebAssembly file (it does not start with `\\0asm`)")]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component: build for `wasm32-wasip2`, or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
}

impl Report {
    /// Whether this runner can load the component.
    pub fn loadable(&self) -> bool {
        self.world.is_some() && self.problems.is_empty()
    }

    /// `block-plugin of runner:plugin@0.1.0`, or what is known of it.
    pub fn target(&self) -> String {
        match (&self.world, &self.package) {
            (Some(world), Some(package)) if world.starts_with("wasi:") => {
                format!("{world} ({package})")
            }
            (Some(world), Some(package)) => format!("{world} of {package}"),
            (Some(world), None) => world.clone(),
            (None, Some(package)) => format!("an unknown world of {package}"),
            (None, None) => "no world this runner knows".into(),
        }
    }
}

impl fmt::Display for Report {
    /// The target, then one paragraph per problem with both signatures.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.target())?;
        if self.loadable() {
            return write!(f, ": this runner can load it");
        }
        write!(f, ": this runner cannot load it")?;
        for problem in &self.problems {
            write!(f, "\n  - {}", problem.message)?;
            if let Some(expected) = &problem.expected {
                write!(f, "\n      expected: {expected}")?;
            }
            if let Some(found) = &problem.found {
                write!(f, "\n      found:    {found}")?;
            }
        }
        Ok(())
    }
}

/// Checks a component's bytes against the versions this runner loads.
pub fn check(bytes: &[u8]) -> Result<Report, CheckError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(CheckError::NotWasm);
    }
    if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        return Err(CheckError::CoreModule);
    }
    let (resolve, world) = match wit_component::decode(bytes) {
        Ok(DecodedWasm::Component(resolve, world)) => (resolve, world),
        Ok(DecodedWasm::WitPackage(..)) => {
            return Err(CheckError::Invalid(
                "it holds WIT definitions, not a component".into(),
            ));
        }
        Err(err) => return Err(CheckError::Invalid(format!("{err:#}"))),
    };
    Ok(Checker {
        ours: ours(),
        theirs: &resolve,
        world,
    }
    .report())
}

/// Every version this runner loads, parsed into one [`Resolve`].
pub fn ours() -> Resolve {
    let mut resolve = Resolve::new();
    for (version, text) in VERSIONS {
        resolve
            .push_str(format!("runner-plugin-{version}.wit"), text)
            .expect("the runner's own WIT parses");
    }
    resolve
}

/// An import or export of a world, by its interface name.
struct Item {
    /// `runner:plugin`, `wasi:cli`.
    package: String,
    /// `block`, `host`.
    interface: String,
    version: Option<String>,
    id: Option<InterfaceId>,
    /// The full name: `runner:plugin/block@0.1.0`, or a plain name.
    name: String,
}

fn items<'a>(
    resolve: &'a Resolve,
    items: impl Iterator<Item = (&'a WorldKey, &'a WorldItem)>,
) -> Vec<Item> {
    items
        .filter(|(_, item)| !matches!(item, WorldItem::Type { .. }))
        .map(|(key, item)| {
            let name = resolve.name_world_key(key);
            let id = match item {
                WorldItem::Interface { id, .. } => Some(*id),
                _ => None,
            };
            let package = id
                .and_then(|id| resolve.interfaces[id].package)
                .map(|p| &resolve.packages[p].name);
            Item {
                package: package.map_or(String::new(), |p| format!("{}:{}", p.namespace, p.name)),
                interface: id
                    .and_then(|id| resolve.interfaces[id].name.clone())
                    .unwrap_or_else(|| name.clone()),
                version: package.and_then(|p| p.version.as_ref().map(|v| v.to_string())),
                id,
                name,
            }
        })
        .collect()
}

struct Checker<'a> {
    ours: Resolve,
    theirs: &'a Resolve,
    world: WorldId,
}

impl Checker<'_> {
    fn report(&self) -> Report {
        let world = &self.theirs.worlds[self.world];
        let exports = items(self.theirs, world.exports.iter());
        let imports = items(self.theirs, world.imports.iter());
        let mut problems = Vec::new();
        let runner: Vec<&Item> = exports
            .iter()
            .filter(|e| e.package == "runner:plugin")
            .collect();
        let (world_name, package) = if runner.is_empty() {
            match exports
                .iter()
                .find(|e| e.package == "wasi:cli" && e.interface == "run")
            {
                Some(run) => (
                    Some("wasi:cli/command".to_string()),
                    Some(package_name(run)),
                ),
                None => {
                    let mut problem = Problem::new(
                        "it exports none of runner:plugin/block, runner:plugin/batch, runner:plugin/agent-adapter or wasi:cli/run, so it is no plugin",
                    );
                    if !exports.is_empty() {
                        let names: Vec<&str> = exports.iter().map(|e| e.name.as_str()).collect();
                        problem = problem.found(format!("exports {}", names.join(", ")));
                    }
                    problems.push(problem);
                    (None, None)
                }
            }
        } else {
            let version = runner[0].version.clone().unwrap_or_default();
            match self.our_package(&version) {
                None => {
                    problems.push(Problem::new(format!(
                        "it targets runner:plugin@{version}; this runner loads {}",
                        known_versions()
                    )));
                    (None, Some(format!("runner:plugin@{version}")))
                }
                Some(package) => {
                    let world = self.pick_world(package, &runner);
                    self.compare_exports(world, &exports, &mut problems);
                    (
                        Some(self.ours.worlds[world].name.clone()),
                        Some(format!("runner:plugin@{version}")),
                    )
                }
            }
        };
        for import in &imports {
            self.check_import(import, &mut problems);
        }
        Report {
            world: world_name,
            package,
            problems,
        }
    }

    fn our_package(&self, version: &str) -> Option<PackageId> {
        self.ours.packages.iter().find_map(|(id, p)| {
            (p.name.namespace == "runner"
                && p.name.name == "plugin"
                && p.name
                    .version
                    .as_ref()
                    .is_some_and(|v| v.to_string() == version))
            .then_some(id)
        })
    }

    fn our_interface(&self, package: PackageId, name: &str) -> Option<InterfaceId> {
        self.ours.packages[package].interfaces.get(name).copied()
    }

    /// The world of `package` whose exports are the component's, or else
    /// the one sharing the most of them.
    fn pick_world(&self, package: PackageId, runner: &[&Item]) -> WorldId {
        let theirs: Vec<&str> = runner.iter().map(|e| e.interface.as_str()).collect();
        let worlds = &self.ours.packages[package].worlds;
        let exports_of = |world: WorldId| -> Vec<String> {
            items(&self.ours, self.ours.worlds[world].exports.iter())
                .into_iter()
                .map(|e| e.interface)
                .collect()
        };
        let score = |world: WorldId| {
            let ours = exports_of(world);
            let shared = ours.iter().filter(|e| theirs.contains(&e.as_str())).count();
            let exact = shared == ours.len() && shared == theirs.len();
            (exact, shared, std::cmp::Reverse(ours.len()))
        };
        *worlds
            .values()
            .max_by_key(|world| score(**world))
            .expect("every version has worlds")
    }

    fn compare_exports(&self, world: WorldId, exports: &[Item], problems: &mut Vec<Problem>) {
        let world_name = &self.ours.worlds[world].name;
        let ours = items(&self.ours, self.ours.worlds[world].exports.iter());
        for wanted in &ours {
            let Some(our_id) = wanted.id else { continue };
            let Some(found) = exports
                .iter()
                .find(|e| e.package == wanted.package && e.interface == wanted.interface)
            else {
                problems.push(
                    Problem::new(format!(
                        "missing export `{}`: the {world_name} world exports it",
                        wanted.name
                    ))
                    .expected(self.interface_signature(&self.ours, our_id)),
                );
                continue;
            };
            let Some(their_id) = found.id else {
                problems.push(Problem::new(format!(
                    "export `{}` is not an interface",
                    found.name
                )));
                continue;
            };
            for (name, our_func) in &self.ours.interfaces[our_id].functions {
                match self.theirs.interfaces[their_id].functions.get(name) {
                    None => problems.push(
                        Problem::new(format!("export `{}` has no function `{name}`", found.name))
                            .expected(signature(&self.ours, our_func)),
                    ),
                    Some(their_func) => {
                        if func_shape(&self.ours, our_func) != func_shape(self.theirs, their_func) {
                            problems.push(self.mismatch(
                                format!(
                                    "export `{}`: function `{name}` does not match",
                                    found.name
                                ),
                                our_func,
                                their_func,
                            ));
                        }
                    }
                }
            }
        }
        for export in exports.iter().filter(|e| e.package == "runner:plugin") {
            if !ours.iter().any(|o| o.interface == export.interface) {
                problems.push(Problem::new(format!(
                    "unexpected export `{}`: the {world_name} world does not have it, and no world of this version has both",
                    export.name
                )));
            }
        }
    }

    fn check_import(&self, import: &Item, problems: &mut Vec<Problem>) {
        let Some(their_id) = import.id else {
            problems.push(Problem::new(format!(
                "unexpected import `{}`: this runner provides only interfaces",
                import.name
            )));
            return;
        };
        if import.package.starts_with("wasi:") {
            let wasi_02 = import
                .version
                .as_deref()
                .is_some_and(|v| v.starts_with("0.2."));
            if !WASI_PACKAGES.contains(&import.package.as_str()) || !wasi_02 {
                problems.push(
                    Problem::new(format!(
                        "unexpected import `{}`: this runner provides WASI 0.2 ({})",
                        import.name,
                        WASI_PACKAGES.join(", ")
                    ))
                    .found(self.interface_signature(self.theirs, their_id)),
                );
            }
            return;
        }
        let provided = (import.package == "runner:plugin")
            .then(|| self.our_package(import.version.as_deref().unwrap_or("")))
            .flatten()
            .filter(|_| HOST_INTERFACES.contains(&import.interface.as_str()))
            .and_then(|package| self.our_interface(package, &import.interface));
        let Some(our_id) = provided else {
            problems.push(
                Problem::new(format!(
                    "unexpected import `{}`: this runner does not provide it (it provides runner:plugin/host and runner:plugin/types of {}, and WASI 0.2)",
                    import.name,
                    known_versions()
                ))
                .found(self.interface_signature(self.theirs, their_id)),
            );
            return;
        };
        for (name, their_func) in &self.theirs.interfaces[their_id].functions {
            match self.ours.interfaces[our_id].functions.get(name) {
                None => problems.push(
                    Problem::new(format!(
                        "unexpected import `{}`: this runner has no function `{name}` there",
                        import.name
                    ))
                    .found(signature(self.theirs, their_func)),
                ),
                Some(our_func) => {
                    if func_shape(&self.ours, our_func) != func_shape(self.theirs, their_func) {
                        problems.push(self.mismatch(
                            format!("import `{}`: function `{name}` does not match", import.name),
                            our_func,
                            their_func,
                        ));
                    }
                }
            }
        }
    }

    /// Both signatures; spelled out in full when the names alone read alike.
    fn mismatch(&self, message: String, ours: &Function, theirs: &Function) -> Problem {
        let (expected, found) = (signature(&self.ours, ours), signature(self.theirs, theirs));
        if expected == found {
            Problem::new(message)
                .expected(func_shape(&self.ours, ours))
                .found(func_shape(self.theirs, theirs))
        } else {
            Problem::new(message).expected(expected).found(found)
        }
    }

    fn interface_signature(&self, resolve: &Resolve, id: InterfaceId) -> String {
        let functions: Vec<String> = resolve.interfaces[id]
            .functions
            .values()
            .map(|f| signature(resolve, f))
            .collect();
        if functions.is_empty() {
            "(no functions)".into()
        } else {
            functions.join("; ")
        }
    }
}

fn package_name(item: &Item) -> String {
    match &item.version {
        Some(version) => format!("{}@{version}", item.package),
        None => item.package.clone(),
    }
}

fn known_versions() -> String {
    VERSIONS
        .iter()
        .map(|(v, _)| *v)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// `run: func(config: string, input: string) -> result<string, string>`,
/// with named types by name.
pub fn signature(resolve: &Resolve, func: &Function) -> String {
    function(resolve, func, false)
}

/// A function's type with every named type spelled out: equal for two
/// functions the component model links to each other.
fn func_shape(resolve: &Resolve, func: &Function) -> String {
    let params: Vec<String> = func
        .params
        .iter()
        .map(|p| render(resolve, &p.ty, true))
        .collect();
    let result = func
        .result
        .as_ref()
        .map(|r| format!(" -> {}", render(resolve, r, true)))
        .unwrap_or_default();
    format!("{}: func({}){result}", func.name, params.join(", "))
}

fn function(resolve: &Resolve, func: &Function, deep: bool) -> String {
    let params: Vec<String> = func
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, render(resolve, &p.ty, deep)))
        .collect();
    let result = func
        .result
        .as_ref()
        .map(|r| format!(" -> {}", render(resolve, r, deep)))
        .unwrap_or_default();
    format!("{}: func({}){result}", func.name, params.join(", "))
}

/// WIT text of a type; `deep` spells out named types.
fn render(resolve: &Resolve, ty: &Type, deep: bool) -> String {
    let id = match ty {
        Type::Bool => return "bool".into(),
        Type::U8 => return "u8".into(),
        Type::U16 => return "u16".into(),
        Type::U32 => return "u32".into(),
        Type::U64 => return "u64".into(),
        Type::S8 => return "s8".into(),
        Type::S16 => return "s16".into(),
        Type::S32 => return "s32".into(),
        Type::S64 => return "s64".into(),
        Type::F32 => return "f32".into(),
        Type::F64 => return "f64".into(),
        Type::Char => return "char".into(),
        Type::String => return "string".into(),
        Type::ErrorContext => return "error-context".into(),
        Type::Id(id) => *id,
    };
    let def = &resolve.types[id];
    let sub = |ty: &Type| render(resolve, ty, deep);
    let opt = |ty: &Option<Type>| ty.as_ref().map_or("_".to_string(), &sub);
    let named = match (&def.name, &def.kind) {
        (_, TypeDefKind::Type(inner)) => return sub(inner),
        (Some(name), _) => Some(name.clone()),
        (None, _) => None,
    };
    if !deep && let Some(name) = &named {
        return name.clone();
    }
    let body = match &def.kind {
        TypeDefKind::Record(r) => format!(
            "record {{ {} }}",
            r.fields
                .iter()
                .map(|f| format!("{}: {}", f.name, sub(&f.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Enum(e) => format!(
            "enum {{ {} }}",
            e.cases
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Flags(f) => format!(
            "flags {{ {} }}",
            f.flags
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Variant(v) => format!(
            "variant {{ {} }}",
            v.cases
                .iter()
                .map(|c| match &c.ty {
                    Some(ty) => format!("{}({})", c.name, sub(ty)),
                    None => c.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Tuple(t) => format!(
            "tuple<{}>",
            t.types.iter().map(sub).collect::<Vec<_>>().join(", ")
        ),
        TypeDefKind::Option(t) => format!("option<{}>", sub(t)),
        TypeDefKind::Result(r) => match (&r.ok, &r.err) {
            (None, None) => "result".into(),
            (ok, None) => format!("result<{}>", opt(ok)),
            (ok, err) => format!("result<{}, {}>", opt(ok), opt(err)),
        },
        TypeDefKind::List(t) => format!("list<{}>", sub(t)),
        TypeDefKind::Map(k, v) => format!("map<{}, {}>", sub(k), sub(v)),
        TypeDefKind::FixedLengthList(t, n) => format!("list<{}, {n}>", sub(t)),
        TypeDefKind::Future(t) => format!("future<{}>", opt(t)),
        TypeDefKind::Stream(t) => format!("stream<{}>", opt(t)),
        TypeDefKind::Resource => format!("resource {}", named.clone().unwrap_or_default()),
        TypeDefKind::Handle(Handle::Own(r)) => format!("own<{}>", resource_name(resolve, *r)),
        TypeDefKind::Handle(Handle::Borrow(r)) => {
            format!("borrow<{}>", resource_name(resolve, *r))
        }
        TypeDefKind::Type(_) | TypeDefKind::Unknown => "unknown".into(),
    };
    // The component model links types by structure: names do not count.
    body
}

fn resource_name(resolve: &Resolve, id: wit_parser::TypeId) -> String {
    resolve.types[id]
        .name
        .clone()
        .unwrap_or_else(|| "resource".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_s_own_wit_parses_and_every_version_has_the_three_worlds() {
        let resolve = ours();
        for (version, _) in VERSIONS {
            let package = resolve
                .packages
                .iter()
                .find(|(_, p)| {
                    p.name
                        .version
                        .as_ref()
                        .is_some_and(|v| v.to_string() == *version)
                })
                .map(|(_, p)| p)
                .unwrap();
            for world in ["block-plugin", "batch-plugin", "agent-plugin"] {
                assert!(
                    package.worlds.contains_key(world),
                    "{version} has no {world}"
                );
            }
        }
    }
}
