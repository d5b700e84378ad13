//! The agent's one `bindgen!` site: host-side bindings of `wit/router.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "router",
});
