//! The remote pods a status round asks about (created, not finished), as the
//! `/status` body: rebuilt (and encoded again) only when a remote pod record
//! changed, shared by the status loop and the usage loop.

use std::sync::{Arc, Mutex};

use crate::remote::PodList;
use crate::store::{Phase, Store};

#[derive(Default)]
pub struct PolledPods {
    cache: Mutex<Option<(u64, Arc<PodList>)>>,
}

impl PolledPods {
    pub fn get(&self, store: &Store) -> Arc<PodList> {
        let generation = store.remotes_generation();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, pods)) = cache.as_ref()
            && *g == generation
        {
            return pods.clone();
        }
        let pods = {
            let st = store.read();
            Arc::new(PodList::new(
                st.remotes
                    .values()
                    .filter(|r| r.phase == Phase::Created && !r.finished)
                    .map(|r| {
                        crate::convert::status_pod(
                            r,
                            r.containers
                                .iter()
                                .filter_map(|id| st.containers.get(id))
                                .map(|c| c.name())
                                .collect(),
                        )
                    })
                    .collect::<Vec<_>>(),
            ))
        };
        *cache = Some((generation, pods.clone()));
        pods
    }
}
