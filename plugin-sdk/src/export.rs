//! The [`export_plugin!`](crate::export_plugin) macro: binds a [`Plugin`](crate::Plugin)
//! implementation to the component's exports.

/// Exports a [`Plugin`](crate::Plugin) implementation as the component's `adapter` interface.
///
/// Call it once per plugin crate, at the crate root: `psp_plugin_sdk::export_plugin!(MyPsp);`.
///
/// It implements the generated bindings' `Guest` trait for a hidden adapter that forwards to
/// `<MyPsp as Plugin>`. The export symbols are only emitted for `wasm32`: a native build (unit
/// tests, clippy) type-checks the adapter but exports nothing, so several plugin crates can be
/// linked into one native binary without clashing symbols.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            #[allow(dead_code)]
            struct __PspPluginAdapter;

            impl $crate::bindings::exports::psp::plugin::adapter::Guest for __PspPluginAdapter {
                fn info() -> $crate::types::PluginInfo {
                    <$plugin as $crate::Plugin>::info()
                }
                fn authorize(
                    req: $crate::types::AuthorizeRequest,
                ) -> ::core::result::Result<$crate::types::Outcome, $crate::types::Failure>
                {
                    <$plugin as $crate::Plugin>::authorize(req)
                }
                fn capture(
                    req: $crate::types::CaptureRequest,
                ) -> ::core::result::Result<$crate::types::Outcome, $crate::types::Failure>
                {
                    <$plugin as $crate::Plugin>::capture(req)
                }
                fn void(
                    req: $crate::types::FollowUpRequest,
                ) -> ::core::result::Result<$crate::types::Outcome, $crate::types::Failure>
                {
                    <$plugin as $crate::Plugin>::void(req)
                }
                fn refund(
                    req: $crate::types::FollowUpRequest,
                ) -> ::core::result::Result<$crate::types::Outcome, $crate::types::Failure>
                {
                    <$plugin as $crate::Plugin>::refund(req)
                }
                fn tokenize(
                    req: $crate::types::TokenizeRequest,
                ) -> ::core::result::Result<$crate::types::Tokenized, $crate::types::Failure>
                {
                    <$plugin as $crate::Plugin>::tokenize(req)
                }
                fn sale(
                    req: $crate::types::AuthorizeRequest,
                ) -> ::core::result::Result<$crate::types::Outcome, $crate::types::Failure>
                {
                    <$plugin as $crate::Plugin>::sale(req)
                }
                fn sync(
                    req: $crate::types::SyncRequest,
                ) -> ::core::result::Result<$crate::types::Outcome, $crate::types::Failure>
                {
                    <$plugin as $crate::Plugin>::sync(req)
                }
                fn complete(
                    req: $crate::types::CompleteRequest,
                ) -> ::core::result::Result<$crate::types::Outcome, $crate::types::Failure>
                {
                    <$plugin as $crate::Plugin>::complete(req)
                }
                fn handle_webhook(
                    req: $crate::types::WebhookRequest,
                ) -> ::core::result::Result<$crate::types::WebhookReply, $crate::types::Failure>
                {
                    <$plugin as $crate::Plugin>::handle_webhook(req)
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::bindings::__export_plugin_world!(
                __PspPluginAdapter with_types_in $crate::bindings
            );
        };
    };
}
