//! The boundary of `engage:plugin@0.2.0` (`wit/since_v0.2.0`): what 0.1.0
//! has, and the `validate-config` export every 0.2.0 world has.

crate::boundary::boundary!(v0_2_0);

/// Ask the plugin whether it can work with `config` (see
/// `wit/since_v0.2.0/config.wit`).
pub fn validate(
    instance: &Instance,
    store: &mut Store<CallState>,
    config: &str,
) -> wasmtime::Result<Result<(), io::PluginError>> {
    let checked = match instance {
        Instance::Rules(i) => i.call_validate_config(store, config)?,
        Instance::Gift(i) => i.call_validate_config(store, config)?,
        Instance::Template(i) => i.call_validate_config(store, config)?,
        Instance::Route(i) => i.call_validate_config(store, config)?,
    };
    Ok(checked.map_err(error))
}
