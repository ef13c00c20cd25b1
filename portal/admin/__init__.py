"""Staff administration: mail domains, lists, criteria, subscribers, opt-outs, import, audit."""
