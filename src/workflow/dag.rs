//! A workflow's graph, as TorchServe's `Dag` checks it: nodes and their children in the order
//! the spec names them, one start node, no loops; and what each node's input is made of.

use std::collections::{BTreeMap, BTreeSet};

/// Why a `dag:` section is not a workflow (TorchServe's `InvalidDAGException` messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    #[error("Self loop exception: node {0} names itself as its child")]
    SelfLoop(String),
    #[error("loop exception: the edge {0} -> {1} is given twice")]
    DuplicateEdge(String, String),
    #[error("DAG should have only one start node, it has {}: {}", .0.len(), .0.join(", "))]
    StartNodes(Vec<String>),
    #[error("Not a valid DAG: the nodes {} are on a cycle", .0.join(", "))]
    Cycle(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    /// Every node, in the order the spec first names it.
    nodes: Vec<String>,
    /// Each node's children, in the spec's order.
    children: BTreeMap<String, Vec<String>>,
}

impl Dag {
    /// The graph of `edges` (each node with its children, in the spec's order), checked.
    pub fn new(edges: Vec<(String, Vec<String>)>) -> Result<Self, DagError> {
        let mut nodes: Vec<String> = Vec::new();
        let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let add = |node: &str, nodes: &mut Vec<String>| {
            if !nodes.iter().any(|n| n == node) {
                nodes.push(node.to_string());
            }
        };
        for (node, kids) in edges {
            add(&node, &mut nodes);
            for kid in kids {
                if kid == node {
                    return Err(DagError::SelfLoop(node));
                }
                add(&kid, &mut nodes);
                let list = children.entry(node.clone()).or_default();
                if list.contains(&kid) {
                    return Err(DagError::DuplicateEdge(node, kid));
                }
                list.push(kid);
            }
        }
        let dag = Self { nodes, children };
        let starts: Vec<String> = dag.nodes.iter().filter(|n| dag.parents(n).is_empty()).cloned().collect();
        if starts.len() != 1 {
            return Err(DagError::StartNodes(starts));
        }
        let order = dag.order();
        if order.len() != dag.nodes.len() {
            let on_cycle = dag.nodes.iter().filter(|n| !order.contains(n)).cloned().collect();
            return Err(DagError::Cycle(on_cycle));
        }
        Ok(dag)
    }

    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// A node's parents, in the order the spec names the nodes.
    pub fn parents(&self, node: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| self.children.get(*n).is_some_and(|kids| kids.iter().any(|k| k == node)))
            .cloned()
            .collect()
    }

    /// Nodes without children: their outputs are the workflow's answer.
    pub fn leaves(&self) -> Vec<String> {
        self.nodes.iter().filter(|n| self.children.get(*n).is_none_or(Vec::is_empty)).cloned().collect()
    }

    /// The nodes that can run once `done` have: not done, every parent done.
    pub fn ready(&self, done: &BTreeSet<String>) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| !done.contains(*n) && self.parents(n).iter().all(|p| done.contains(p)))
            .cloned()
            .collect()
    }

    /// Kahn's order; shorter than the nodes when some lie on a cycle.
    fn order(&self) -> Vec<String> {
        let mut done = BTreeSet::new();
        let mut order = Vec::new();
        loop {
            let ready = self.ready(&done);
            if ready.is_empty() {
                return order;
            }
            for node in ready {
                done.insert(node.clone());
                order.push(node);
            }
        }
    }

    /// TorchServe's describe text for the graph: Java's `Map.toString()` of the `dag:` map.
    pub fn describe(&self) -> String {
        let entries: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| Some(format!("{n}=[{}]", self.children.get(n)?.join(", "))))
            .collect();
        format!("{{{}}}", entries.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag(edges: &[(&str, &[&str])]) -> Result<Dag, DagError> {
        Dag::new(edges.iter().map(|(n, kids)| (n.to_string(), kids.iter().map(|k| k.to_string()).collect())).collect())
    }

    #[test]
    fn a_fan_out_and_in_runs_in_waves() {
        let dag = dag(&[("pre", &["a", "b"]), ("a", &["post"]), ("b", &["post"])]).unwrap();
        assert_eq!(dag.parents("post"), ["a", "b"]);
        assert_eq!(dag.leaves(), ["post"]);
        let mut done = BTreeSet::new();
        assert_eq!(dag.ready(&done), ["pre"]);
        done.insert("pre".to_string());
        assert_eq!(dag.ready(&done), ["a", "b"], "independent branches run together");
        done.extend(["a".to_string(), "b".to_string()]);
        assert_eq!(dag.ready(&done), ["post"]);
        assert_eq!(dag.describe(), "{pre=[a, b], a=[post], b=[post]}");
    }

    #[test]
    fn malformed_graphs_are_refused_with_torchserves_reasons() {
        assert_eq!(dag(&[("a", &["a"])]), Err(DagError::SelfLoop("a".into())));
        assert_eq!(dag(&[("a", &["b", "b"])]), Err(DagError::DuplicateEdge("a".into(), "b".into())));
        assert_eq!(dag(&[("a", &["c"]), ("b", &["c"])]), Err(DagError::StartNodes(vec!["a".into(), "b".into()])));
        assert_eq!(dag(&[("s", &["a"]), ("a", &["b"]), ("b", &["a"])]), Err(DagError::Cycle(vec!["a".into(), "b".into()])));
        let err = dag(&[("s", &["a"]), ("a", &["b"]), ("b", &["a"])]).unwrap_err().to_string();
        assert!(err.starts_with("Not a valid DAG"), "{err}");
    }

    #[test]
    fn several_leaves_are_allowed() {
        let dag = dag(&[("s", &["a", "b"]), ("a", &[]), ("b", &[])]).unwrap();
        assert_eq!(dag.leaves(), ["a", "b"]);
    }
}
