//! The engine's event stream, filtered to container lifecycle events and handed to
//! blocking code through a channel.

use std::collections::HashMap;
use std::sync::mpsc;

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;

use crate::ContainerEvent;

/// Actions that can change what the daemon manages or how.
/// `kill` and `stop` tell a stop from a crash (they come before the `die` of a stop);
/// `health_status` comes only on a transition (the failure watch keeps the streak).
const ACTIONS: [&str; 9] = [
    "create",
    "start",
    "die",
    "destroy",
    "rename",
    "update",
    "kill",
    "stop",
    "health_status",
];

/// Forwards container events until the stream ends or the receiver is dropped.
pub(crate) fn subscribe(
    rt: &tokio::runtime::Runtime,
    docker: &Docker,
) -> mpsc::Receiver<ContainerEvent> {
    let (tx, rx) = mpsc::channel();
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        (
            "event".to_string(),
            ACTIONS.iter().map(|a| a.to_string()).collect(),
        ),
    ]);
    let docker = docker.clone();
    rt.spawn(async move {
        let mut stream = docker.events(Some(EventsOptions {
            filters: Some(filters),
            ..Default::default()
        }));
        while let Some(Ok(msg)) = stream.next().await {
            let actor = msg.actor.unwrap_or_default();
            let name = actor
                .attributes
                .as_ref()
                .and_then(|a| a.get("name").cloned())
                .unwrap_or_default();
            let event = ContainerEvent {
                action: msg.action.unwrap_or_default(),
                id: actor.id.unwrap_or_default(),
                name,
            };
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    rx
}
