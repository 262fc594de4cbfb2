"""``managed_scorer_node``: the scorer as a managed (lifecycle) node, idle until configured and activated.

Lifecycle publishers are not used: the node publishes an ended episode's
EpisodeResult during deactivate, cleanup and shutdown, and /diagnostics in
every state, which a lifecycle publisher (silent while inactive) would drop.
"""

from __future__ import annotations

from typing import Any, NoReturn

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn

from topreward_ros.node.base import ScorerNodeBase
from topreward_ros.node.run import run


class ManagedScorerNode(LifecycleNodeMixin, ScorerNodeBase):
    """The scorer as a managed (lifecycle) node: configure loads, activate scores, deactivate frees.

    * configure: the parameters are checked and the model is loaded before the
      transition returns; a model that cannot load fails the transition with
      the reason (on /diagnostics and in the log) and leaves the node
      unconfigured, ready to be configured again;
    * activate: instruction and camera subscriptions, the reset service and
      the scoring timer; a model released on deactivate is loaded again first;
    * deactivate: no frames are taken and nothing is scored; the episode (its
      frames, its success latch) is kept and goes on at the next activate.
      With ``release_model_on_deactivate`` the model is freed too (and the
      CUDA cache emptied), for a GPU that is needed elsewhere meanwhile;
    * cleanup and shutdown: publishers, episode and model are freed.
    """

    def __init__(self, **kwargs: Any) -> None:
        # As rclpy's own LifecycleNode: the node first, then the lifecycle
        # mixin, whose __init__ does not chain. Not LifecycleNode itself: the
        # transitions get a group of their own, so a configure that loads a
        # model for a minute does not hold up diagnostics or parameter calls.
        ScorerNodeBase.__init__(self, **kwargs)
        LifecycleNodeMixin.__init__(self, callback_group=MutuallyExclusiveCallbackGroup())
        self._model.retry_failed_loads = False
        self.get_logger().info("managed scorer waiting to be configured")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._create_publishers()
        error = self._model.load_now("configure")
        if error is not None:
            self.get_logger().error(f"configure failed, node stays unconfigured: {error}")
            self._destroy_publishers()  # the model's error stays on /diagnostics
            return TransitionCallbackReturn.FAILURE
        self._lifecycle_state = "inactive"
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._model.scorer is None:
            error = self._model.load_now("activate")
            if error is not None:
                self.get_logger().error(f"activate failed, node stays inactive: {error}")
                return TransitionCallbackReturn.FAILURE
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        if bool(self.get_parameter("release_model_on_deactivate").value):
            self._release_model()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured


def main_managed(args: list[str] | None = None) -> NoReturn:
    """``managed_scorer_node``: the lifecycle node, idle until configured and activated."""
    run(ManagedScorerNode, args)


if __name__ == "__main__":
    main_managed()
