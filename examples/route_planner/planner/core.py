"""The agent object and its params, shared by every module of the package."""

from project_o import Agent

agent = Agent("route-planner")

#: 2-opt passes over the tour (0: keep the first tour as it is)
PASSES = agent.param("passes", 0, low=0, high=8)
#: the city the first tour starts from
START = agent.param("start", 0, low=0, high=19)
